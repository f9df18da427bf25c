"""``mlflow-bucket compact``: fold every log's tail into a checkpoint now.

Any process does this on its own once a tail reaches the threshold
(``compact_threshold``); the command is for a store nobody has read for a
while, or before a ``gc``. It writes exactly the checkpoint a store would
(same fold, same dump), with create-if-absent, so running it while others
log is safe: a racing compactor writes the same document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlflow_bucket.log import Compaction, ObjectCache
from mlflow_bucket.storage import ObjectStore

from .health import recorded
from .logs import LogSpec


@dataclass(frozen=True)
class CompactResult:
    root: str
    seq: int  # the log's tail
    checkpoint_before: int
    written: bool  # a checkpoint at ``seq`` was written by this call

    @property
    def tail(self) -> int:
        """Log objects that followed the newest checkpoint before this call."""
        return self.seq - self.checkpoint_before


def compact_log(
    store: ObjectStore,
    spec: LogSpec,
    *,
    cache: ObjectCache | None = None,
    min_tail: int = 1,
    dry_run: bool = False,
) -> CompactResult:
    """Checkpoint ``spec``'s log if ``min_tail`` or more objects follow its newest checkpoint."""
    checkpoints = spec.checkpoints(store, cache, Compaction(gc=False))
    # What the read skips is logged, one line each (health.recorded).
    with recorded():
        seq, state, base = checkpoints.read()
    written = False
    if not dry_run and seq > base.seq and seq - base.seq >= max(1, min_tail):
        written, _ = checkpoints.write(seq, state, base)
    return CompactResult(spec.root, seq, base.seq, written)


def compact_all(
    store: ObjectStore,
    specs: Iterable[LogSpec],
    *,
    cache: ObjectCache | None = None,
    min_tail: int = 1,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda root: None,
) -> list[CompactResult]:
    out = []
    for spec in specs:
        progress(spec.root)
        out.append(compact_log(store, spec, cache=cache, min_tail=min_tail, dry_run=dry_run))
    return out
