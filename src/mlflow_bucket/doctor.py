"""``mlflow-bucket doctor``: check that a store works for this machine.

Each check passes, warns or fails, and a failure says how to fix it. The
checks touch only a probe prefix (``.doctor/``) under the store's root and
remove what they wrote.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from .storage import (
    AlreadyExists,
    NotFound,
    ObjectStore,
    PermissionDenied,
    StorageError,
)

PROBE_PREFIX = ".doctor/"
# Beyond this the store's clock and ours disagree enough to matter for
# retention windows and for timestamps MLflow shows.
SKEW_WARN_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "pass", "warn" or "fail"
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"[{self.status.upper():4}] {self.name}: {self.detail}"
        return f"{line}\n       fix: {self.fix}" if self.fix and self.status != "pass" else line


def _denied(action: str, store: ObjectStore, exc: StorageError) -> Check:
    return Check(
        action,
        "fail",
        str(exc),
        f"grant these credentials {action} on {store.uri} "
        "(the Terraform modules' writer role for logging, reader role for the UI)",
    )


def _reachable(store: ObjectStore) -> Check:
    try:
        store.list_page("", max_results=1)
    except NotFound as exc:
        return Check("bucket reachable", "fail", str(exc), "check the bucket name in the URI")
    except PermissionDenied as exc:
        return _denied("list", store, exc)
    except StorageError as exc:
        return Check(
            "bucket reachable",
            "fail",
            str(exc),
            "check the network, the endpoint (STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL) "
            "and the credentials (gcloud auth application-default login, AWS profile)",
        )
    return Check("bucket reachable", "pass", f"listed {store.uri}")


def _read(store: ObjectStore) -> Check:
    try:
        store.get(f"{PROBE_PREFIX}absent-{uuid.uuid4().hex}")
    except NotFound:
        return Check("read", "pass", "objects can be read (a missing one answers 404)")
    except PermissionDenied as exc:
        return _denied("read", store, exc)
    except StorageError as exc:
        return Check("read", "fail", str(exc), "see the error above")
    return Check("read", "fail", "a random key exists?", "report this")


def _write_cycle(store: ObjectStore) -> Iterator[Check]:
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    try:
        store.create(key, payload)
    except PermissionDenied as exc:
        yield _denied("write", store, exc)
        return
    except StorageError as exc:
        yield Check("write", "fail", str(exc), "see the error above")
        return
    try:
        ok = store.get(key) == payload
        yield Check(
            "write",
            "pass" if ok else "fail",
            "an object written reads back intact" if ok else "read back other bytes",
            "" if ok else "the endpoint altered the object: check any proxy in between",
        )
        try:
            store.create(key, b"second writer")
        except AlreadyExists:
            yield Check("create-if-absent", "pass", "a second create of one key was refused")
        else:
            yield Check(
                "create-if-absent",
                "fail",
                "a second create of the same key overwrote it",
                "this endpoint ignores conditional writes (ifGenerationMatch=0 / "
                "If-None-Match: *); concurrent writers would lose data: use GCS, S3 "
                "(since Aug 2024) or an emulator that honours preconditions",
            )
    finally:
        try:
            store.delete(key)
        except PermissionDenied as exc:
            yield _denied("delete", store, exc)
        except StorageError as exc:
            yield Check("delete", "fail", str(exc), "see the error above")
        else:
            gone = not store.exists(key)
            yield Check(
                "delete",
                "pass" if gone else "fail",
                "the probe object was removed" if gone else "the probe object is still there",
            )


def _clock(store: ObjectStore) -> Check:
    try:
        server = store.server_time()
    except StorageError as exc:
        return Check("clock", "warn", f"could not read the store's clock: {exc}")
    skew = (datetime.now(UTC) - server).total_seconds()
    if abs(skew) > SKEW_WARN_SECONDS:
        return Check(
            "clock",
            "warn",
            f"this machine's clock is {skew:+.0f}s off the store's",
            "enable NTP (timedatectl set-ntp true); ordering never depends on clocks, "
            "but run times shown in the UI do",
        )
    return Check("clock", "pass", f"{skew:+.1f}s from the store's clock (1 s resolution)")


def _latency(store: ObjectStore, samples: int = 5) -> Check:
    times: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        try:
            store.list_page(PROBE_PREFIX, max_results=1)
        except StorageError:
            break
        times.append(time.perf_counter() - start)
    if not times:
        return Check("latency", "warn", "no request succeeded")
    median_ms = statistics.median(times) * 1000
    return Check("latency", "pass", f"median {median_ms:.0f} ms per request over {len(times)}")


def run_checks(store: ObjectStore) -> list[Check]:
    results = [_reachable(store)]
    if results[0].status == "fail":
        return results
    results.append(_read(store))
    results.extend(_write_cycle(store))
    results.append(_clock(store))
    results.append(_latency(store))
    return results


def report(store: ObjectStore, out: Callable[[str], None] = print) -> int:
    """Run the checks, print them; exit status 0 if none failed, else 1."""
    out(f"mlflow-bucket doctor: {store.uri}")
    results = run_checks(store)
    for check in results:
        out(check.render())
    failed = [c for c in results if c.status == "fail"]
    out(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
