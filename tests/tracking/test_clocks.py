"""Clocks that disagree, and writes that land late, lose nothing and are skipped by no reader.

The log's order never depends on a clock (numbers claimed with
create-if-absent). Timestamps decide only last-writer-wins registers (tags,
status, end time, lifecycle): the greater (timestamp, writer id) wins,
whatever the order the entries reach the log in; a writer stamps with the
store's clock as measured from its HTTP Date headers, never with its own,
and never stamps a time before one it already used.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import close_backends
from mlflow_bucket_plugins.tracking.store import BucketTrackingStore
from tracking_workers import child_env, count_log, finish, start, wait_line

from mlflow_bucket.testing.pytest_plugin import BucketInfo

BACKENDS = ["gcs", "s3"]
T = TypeVar("T")
FAKETIME = shutil.which("faketime")
SKEW_S = 600  # ten minutes


@pytest.fixture(params=BACKENDS)
def bucket(request: pytest.FixtureRequest) -> BucketInfo:
    info: BucketInfo = request.getfixturevalue(f"{request.param}_bucket")
    return info


def _fresh() -> None:

    close_backends()
    forget_store_instances()


def _in_process(bucket: BucketInfo, call: Callable[[], T]) -> T:
    """``call()`` here as in a new process: fresh Backends, an empty cache."""
    with pytest.MonkeyPatch.context() as env, tempfile.TemporaryDirectory() as state:
        for name, value in bucket.env.items():
            env.setenv(name, value)
        env.setenv("MLFLOW_BUCKET_SPOOL_DIR", f"{state}/spool")
        env.setenv("MLFLOW_BUCKET_CACHE_DIR", f"{state}/cache")
        _fresh()
        try:
            return call()
        finally:
            _fresh()


# -- real skewed clocks (libfaketime) ----------------------------------------------


@pytest.mark.emulator
@pytest.mark.skipif(
    FAKETIME is None,
    reason="needs faketime (Debian package faketime, installed by ./dev setup) "
    "to run a writer whose clock is ten minutes off",
)
def test_writers_ten_minutes_ahead_and_behind_lose_nothing(
    bucket: BucketInfo, tmp_path: Path
) -> None:
    """Three processes, clocks +10 min, right and -10 min, set one tag in that
    order (real time), then each logs a run. The last setter wins, every run
    and point is there, and each stamp is the store's time."""
    uri = f"{bucket.url}/team"

    def setup() -> tuple[str, str]:
        client = MlflowClient(uri)
        eid = client.create_experiment("clocks")
        return eid, client.create_run(eid).info.run_id

    eid, shared = _in_process(bucket, setup)
    env = child_env(bucket.env, tmp_path / "machine")
    clocks = {"ahead": f"+{SKEW_S}s", "right": None, "behind": f"-{SKEW_S}s"}
    procs = {}
    for name, offset in clocks.items():
        go = tmp_path / f"go-{name}"
        prefix = [str(FAKETIME), "-f", offset] if offset else []
        args = {"uri": uri, "shared_run": shared, "value": name, "go": str(go)}
        procs[name] = (start("skewed_writer", args, env, prefix=prefix), go)
    for proc, _ in procs.values():
        wait_line(proc, "READY")

    stamps = {}
    for name, (proc, go) in procs.items():
        if stamps:
            time.sleep(2)  # real time between the setters: more than the clocks' error
        go.touch()
        done = wait_line(proc, "DONE")
        stamps[name] = (done["ts"], done["writer"], time.time() * 1000)
    results = {name: finish(proc) for name, (proc, _) in procs.items()}

    # Each writer's local clock was off as intended, its stamps were not.
    now_ms = time.time() * 1000
    assert abs(results["ahead"]["local_ms"] - now_ms - SKEW_S * 1000) < 60_000
    assert abs(results["behind"]["local_ms"] - now_ms + SKEW_S * 1000) < 60_000
    for ts, _, real in stamps.values():
        assert abs(ts - real) < 5000, stamps

    def read() -> Any:
        client = MlflowClient(uri)
        runs = {r.info.run_name: r for r in client.search_runs([eid])}
        histories = {
            name: client.get_metric_history(r.info.run_id, "m") for name, r in runs.items()
        }
        return client.get_run(shared).data.tags["who"], runs, histories

    who, runs, histories = _in_process(bucket, read)
    # The greater (timestamp, writer) wins, and that is the last in real time.
    assert who == max(clocks, key=lambda n: stamps[n][:2]) == "behind"
    for name in clocks:
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.params == {"clock": name}
        assert [m.step for m in histories[name]] == list(range(5))
        # Metric timestamps are data, from the writer's own clock, as MLflow logs them.
        skew = {"ahead": SKEW_S, "right": 0, "behind": -SKEW_S}[name] * 1000
        assert all(abs(m.timestamp - now_ms - skew) < 120_000 for m in histories[name])
    counts = _in_process(bucket, lambda: count_log(uri, eid))
    assert counts["points"] == 15 and counts["point_dups"] == 0 and counts["batch_dups"] == 0


# -- writes that land late ---------------------------------------------------------


@pytest.fixture
def proxied(bucket: BucketInfo, fault_proxy: Any) -> Iterator[tuple[BucketInfo, Any]]:
    proxy = fault_proxy(bucket.endpoint)
    yield bucket, proxy
    proxy.clear()


def _late_upload(bucket: BucketInfo, proxy: Any, tmp_path: Path, outage_s: float) -> None:
    """A writer's uploads are refused for ``outage_s`` (its flusher retries
    meanwhile); another writer tags the same run after it, and lands first.
    The late entries are still read by a reader already past them in time,
    and the older tag loses although it is later in the log."""
    uri = f"{bucket.url}/team"
    with pytest.MonkeyPatch.context() as env:
        for name, value in bucket.env.items():
            env.setenv(name, value)
        env.setenv("MLFLOW_BUCKET_REFRESH_INTERVAL", "0.2")
        _fresh()
        # This process: the second writer and a reader following the log.
        client = MlflowClient(uri)
        eid = client.create_experiment("late")
        run_id = client.create_run(eid).info.run_id
        store = client._tracking_client.store
        assert store.flush(60)

        late_env = child_env(
            bucket.via(proxy).env, tmp_path / "late", {"MLFLOW_BUCKET_FLUSH_INTERVAL": "0.2"}
        )
        go = tmp_path / "go"
        late = start("late_writer", {"uri": uri, "run_id": run_id, "go": str(go)}, late_env)
        wait_line(late, "READY")
        proxy.outage(outage_s)
        go.touch()
        stamped = wait_line(late, "LOGGED")
        client.set_tag(run_id, "t", "new")
        assert store.flush(60)
        assert store.backend.now_ms() > stamped["ts"]
        assert client.get_run(run_id).data.tags["t"] == "new"
        assert "late" not in client.get_run(run_id).data.metrics  # still held up

        waited = finish(late, timeout=outage_s + 300)["waited_s"]
        assert proxy.stats()["faults"].get("outage", 0) > 0
        assert waited > 0
        # The reader that had already read past the new tag sees the late entries.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = client.get_run(run_id)
            if "late" in run.data.metrics:
                break
            time.sleep(0.1)
        assert run.data.metrics["late"] == 9.0
        assert run.data.tags["t"] == "new"
        assert [m.step for m in client.get_metric_history(run_id, "late")] == list(range(10))

    def read() -> Any:
        c = MlflowClient(uri)
        steps = [m.step for m in c.get_metric_history(run_id, "late")]
        return c.get_run(run_id).data.tags["t"], steps

    assert _in_process(bucket, read) == ("new", list(range(10)))
    counts = _in_process(bucket, lambda: count_log(uri, eid))
    assert counts["points"] == 10 and counts["point_dups"] == 0 and counts["batch_dups"] == 0


@pytest.mark.emulator
def test_a_write_held_up_by_an_outage_lands_late_and_loses_nothing(
    proxied: tuple[BucketInfo, Any], tmp_path: Path
) -> None:
    bucket, proxy = proxied
    _late_upload(bucket, proxy, tmp_path, outage_s=3)


@pytest.mark.emulator
@pytest.mark.slow
def test_a_write_retried_for_a_minute_lands_late_and_loses_nothing(
    proxied: tuple[BucketInfo, Any], tmp_path: Path
) -> None:
    bucket, proxy = proxied
    _late_upload(bucket, proxy, tmp_path, outage_s=60)


# -- the register rule -------------------------------------------------------------


class Writer:
    """One of two writers in this process on one memory store, with a clock we set."""

    def __init__(self, uri: str, writer_id: str) -> None:
        self.store = BucketTrackingStore(uri)
        self.store.backend.writer = writer_id
        self.now = 1_000_000

        def clock() -> int:
            return self.now

        self.store.backend.clock.now_ms = clock  # type: ignore[method-assign]

    def write(self, now: int, call: Callable[[BucketTrackingStore], Any]) -> None:
        self.now = now
        call(self.store)
        assert self.store.flush(30)


def _cold_reads(uri: str, run_id: str, eid: str) -> list[Any]:
    """What a reader folding the log sees, and one starting from a checkpoint."""
    out = []
    for checkpoint in (False, True):
        _fresh()
        store = BucketTrackingStore(uri)
        if checkpoint:
            store.backend.experiment_view(eid).checkpoints.compact()
            _fresh()
            store = BucketTrackingStore(uri)
        run = store.get_run(run_id)
        out.append((run.data.tags.get("k"), run.info.status))
    return out


@pytest.mark.parametrize("first", ["a", "b"])
def test_equal_timestamps_go_to_the_greater_writer_id_in_any_log_order(
    memory_uri: str, first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_BUCKET_REFRESH_INTERVAL", "0")
    writers = {"a": Writer(memory_uri, "a" * 12), "b": Writer(memory_uri + "/", "b" * 12)}
    store = writers["a"].store
    eid = store.create_experiment("e")
    run_id = store.create_run(eid, "u", 0, [], None).info.run_id
    assert store.flush(30)
    order = [first, "b" if first == "a" else "a"]
    for name in order:
        writers[name].write(5_000_000, lambda s, n=name: s.set_tag(run_id, _tag("k", f"from-{n}")))
    for writer in writers.values():  # every process agrees, its own overlay included
        assert writer.store.get_run(run_id).data.tags["k"] == "from-b"
    assert _cold_reads(memory_uri, run_id, eid) == [("from-b", "RUNNING")] * 2


@pytest.mark.parametrize("first", ["later", "earlier"])
def test_the_later_timestamp_wins_in_any_log_order(
    memory_uri: str, first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_BUCKET_REFRESH_INTERVAL", "0")
    # The writer id that would win a tie loses on time.
    writers = {"later": Writer(memory_uri, "a" * 12), "earlier": Writer(memory_uri + "/", "z" * 12)}
    store = writers["later"].store
    eid = store.create_experiment("e")
    run_id = store.create_run(eid, "u", 0, [], None).info.run_id
    assert store.flush(30)
    stamps = {"later": 3_000_000, "earlier": 2_000_000}
    for name in [first, "earlier" if first == "later" else "later"]:
        writers[name].write(
            stamps[name],
            lambda s, n=name: (
                s.set_tag(run_id, _tag("k", n)),
                s.update_run_info(
                    run_id,
                    RunStatus.FINISHED if n == "later" else RunStatus.FAILED,
                    end_time=1,
                    run_name=None,
                ),
            ),
        )
    for writer in writers.values():
        run = writer.store.get_run(run_id)
        assert (run.data.tags["k"], run.info.status) == ("later", "FINISHED")
    assert _cold_reads(memory_uri, run_id, eid) == [("later", "FINISHED")] * 2


def test_a_writer_whose_clock_steps_back_never_loses_to_itself(
    memory_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock correction is re-measured, and a local clock can be stepped
    back: a later call of one process still wins over its earlier ones."""
    monkeypatch.setenv("MLFLOW_BUCKET_REFRESH_INTERVAL", "0")
    writer = Writer(memory_uri, "w" * 12)
    store = writer.store
    eid = store.create_experiment("e")
    writer.now = 9_000_000
    run_id = store.create_run(eid, "u", 0, [], None).info.run_id  # RUNNING at 9,000,000
    writer.write(8_000_000, lambda s: s.set_tag(run_id, _tag("k", "second")))
    writer.write(7_000_000, lambda s: s.update_run_info(run_id, RunStatus.FINISHED, 1, None))
    run = store.get_run(run_id)
    assert (run.data.tags["k"], run.info.status) == ("second", "FINISHED")
    assert _cold_reads(memory_uri, run_id, eid) == [("second", "FINISHED")] * 2


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)
