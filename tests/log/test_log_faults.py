"""The log and the spool through the fault-injecting proxy, against the real emulators.

Writes whose answers are lost (the emulator applied them, the client saw a
503 or a reset) must still land exactly once, in a gapless order.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlflow_bucket.log import Log, Spool
from mlflow_bucket.storage import ObjectStore, RetryPolicy

BACKENDS = ["gcs", "s3"]

# Enough attempts that an append outlasts the heavy fault rates below (a
# retried create is answered "exists", and that answer can be lost too).
PATIENT = RetryPolicy(max_attempts=40, initial_wait=0.01, max_wait=0.1, deadline=60)


@pytest.fixture
def proxied(
    store_target: tuple[str, dict[str, Any], Any],
    open_target: Callable[..., ObjectStore],
    fault_proxy: Callable[..., Any],
) -> tuple[ObjectStore, ObjectStore, Any]:
    """(store through the proxy, store straight to the emulator, proxy)."""
    _, _, info = store_target
    proxy = fault_proxy(info.endpoint)
    proxy.seed(7)
    return open_target(via=proxy, retry=PATIENT), open_target(), proxy


def _heavy_faults(proxy: Any) -> None:
    """Lost answers to a third of the writes, and some failed reads."""
    writes = ["POST", "PUT"]
    proxy.fail(503, fraction=0.2, methods=writes, after_upstream=True)
    proxy.reset(fraction=0.15, when="after", methods=writes)
    proxy.fail(503, fraction=0.1, methods=["GET"])


def test_appends_whose_answers_are_lost_land_once_each_without_gaps(
    proxied: tuple[ObjectStore, ObjectStore, Any],
) -> None:
    store, direct, proxy = proxied
    _heavy_faults(proxy)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(who: str) -> None:
        log = Log(store, "exp/7", cache=None)
        start.wait()
        try:
            for i in range(5):
                log.append([{"w": who, "i": i}])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    proxy.clear()
    records = list(Log(direct, "exp/7", cache=None).read(0))
    assert [seq for seq, _ in records] == list(range(1, 21))
    seen = Counter((e["w"], e["i"]) for _, entries in records for e in entries)
    assert seen == Counter({(f"t{n}", i): 1 for n in range(4) for i in range(5)})
    faults = proxy.stats()["faults"]
    assert faults.get("fail_after", 0) > 0 and faults.get("reset_after", 0) > 0


def test_the_spool_rides_out_an_outage(
    proxied: tuple[ObjectStore, ObjectStore, Any],
    open_target: Callable[..., ObjectStore],
    tmp_path: Path,
) -> None:
    _, direct, proxy = proxied
    # The default test policy gives up within about a second: the flusher
    # sees the outage and keeps retrying on its own.
    store = open_target(via=proxy)
    # Ended once the flusher has failed, not after a fixed time: on a loaded
    # machine a timed outage can be over before the first upload attempt.
    proxy.outage(600)
    with Spool(tmp_path / "spool", store, flush_interval=0.05, cache=None) as spool:
        for i in range(5):
            spool.enqueue("exp/1", [{"i": i}])
        deadline = time.monotonic() + 60
        while spool._flusher.failures == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proxy.clear()
        assert spool.flush(timeout=90)
    entries = [e["i"] for _, batch in Log(direct, "exp/1", cache=None).read(0) for e in batch]
    assert sorted(entries) == list(range(5))


def test_the_spool_uploads_exactly_once_when_appends_end_in_doubt(
    store_target: tuple[str, dict[str, Any], Any],
    open_target: Callable[..., ObjectStore],
    fault_proxy: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """With few retries, appends give up not knowing whether they landed.

    The flusher then looks its batch ids up in the log before trying again.
    """
    _, _, info = store_target
    proxy = fault_proxy(info.endpoint)
    proxy.seed(3)
    impatient = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02, deadline=10)
    store, direct = open_target(via=proxy, retry=impatient), open_target()
    _heavy_faults(proxy)
    with Spool(tmp_path / "spool", store, flush_interval=0.02, cache=None) as spool:
        for i in range(12):
            spool.enqueue("exp/1", [{"i": i}])
            if i % 3 == 2:
                assert spool.flush(timeout=120)
        assert spool.flush(timeout=120)
        assert spool._flusher.failures > 0
    proxy.clear()
    entries = [e["i"] for _, batch in Log(direct, "exp/1", cache=None).read(0) for e in batch]
    assert sorted(entries) == list(range(12))
