"""What is in a store's logs that is not theirs: for ``doctor`` and ``status``.

An object numbered past a gap no checkpoint covers (``log/000000000009``
when the log ends at 3) is not part of the log: readers ignore it and
writers fill the gap (docs/format.md, "Gaps"). Nothing fails because of
it, which is why ``doctor`` names it: it is foreign until writers reach its
number, and from then on it is read like a log object. Names under ``log/``
or ``ckpt/`` that are not 12-digit numbers are skipped by readers; they are
named too.

The command line's readers (``status``, ``compact``, ``gc``) gather the
warnings their reads give (``recorded``): the log layer also logs each as
one line, so the command prints no warning twice, and ``status`` lists them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from mlflow_bucket.doctor import Check, store_unreachable
from mlflow_bucket.log import CorruptObjectWarning, Log
from mlflow_bucket.marker import UnknownFormat, read_marker
from mlflow_bucket.storage import ObjectStore, StorageError

from .logs import LogSpec, all_logs

FIX = (
    "if nobody here put them there, delete them while they lie past the gap "
    "(gsutil rm / aws s3 rm); else writers fill the gap and then read them as log objects; "
    "log objects deleted by hand: restore them from noncurrent versions first "
    "(docs/format.md, Gaps)"
)


@dataclass(frozen=True)
class Foreign:
    """The objects listed past one log's first uncovered gap."""

    root: str
    gap: int  # the first missing number
    urls: tuple[str, ...]


def scan_log(store: ObjectStore, spec: LogSpec) -> Foreign | None:
    """One log's objects past an uncovered gap (a few LISTs; nothing is read)."""
    found = Log(store, spec.root, cache=None).past_gap()
    if found is None:
        return None
    gap, past = found
    return Foreign(spec.root, gap, tuple(store.url(o.key) for o in past))


def scan(
    store: ObjectStore, specs: Iterable[LogSpec], workers: int = 8
) -> tuple[list[Foreign], list[str]]:
    """Every log's objects past an uncovered gap, and the warnings the listings
    gave (names under ``log/`` or ``ckpt/`` that are not sequence numbers)."""
    with recorded() as named, ThreadPoolExecutor(workers, "mlflow-bucket-scan") as pool:
        found = [f for f in pool.map(lambda spec: scan_log(store, spec), specs) if f]
    return found, named


def log_checks(store: ObjectStore, earlier: Sequence[Check]) -> list[Check]:
    """doctor's check of the logs: a warning naming every foreign object."""
    if store_unreachable(earlier):
        return []
    try:
        if read_marker(store) is None:
            return []  # an empty store: no logs
        found, misnamed = scan(store, all_logs(store))
    except (StorageError, UnknownFormat) as exc:
        return [Check("logs", "warn", f"could not list the logs: {exc}")]
    if not found and not misnamed:
        return [Check("logs", "pass", "no foreign object under any log")]
    parts = [
        f"{', '.join(f.urls)} past a gap at log object {f.gap} of {f.root} "
        "(ignored by readers until writers fill it)"
        for f in found
    ]
    total = sum(len(f.urls) for f in found) + len(misnamed)
    return [
        Check("logs", "warn", f"{total} foreign object(s): " + "; ".join(parts + misnamed), FIX)
    ]


@contextmanager
def recorded() -> Iterator[list[str]]:
    """The CorruptObjectWarnings given inside, each once, in order; not shown."""
    out: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorruptObjectWarning)
        try:
            yield out
        finally:
            for w in caught:
                text = str(w.message)
                if issubclass(w.category, CorruptObjectWarning):
                    if text not in out:
                        out.append(text)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
