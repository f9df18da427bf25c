"""What a writer logged survives a SIGKILL, a clean exit, an outage and damaged objects.

The writers are real processes running plain MLflow code; what they left
is checked from another process or a fresh Backend with an empty cache,
and counted in the raw log objects where "exactly once" is the point
(the fold would hide a batch uploaded twice).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import close_backends
from tracking_workers import (
    child_env,
    count_log,
    finish,
    finish_lines,
    list_experiments,
    read_all,
    start,
    wait_line,
)

from mlflow_bucket.log import CorruptObjectWarning, Log
from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.pytest_plugin import BucketInfo, s3_bucket_info, unique_bucket_name
from mlflow_bucket.testing.s3_emulator import S3Emulator

pytestmark = pytest.mark.emulator

BACKENDS = ["gcs", "s3"]
T = TypeVar("T")


@pytest.fixture(params=BACKENDS)
def bucket(request: pytest.FixtureRequest) -> BucketInfo:
    info: BucketInfo = request.getfixturevalue(f"{request.param}_bucket")
    return info


def _fresh() -> None:
    """The previous "process" exits (uploads, stops its flusher); none of its
    Backends or store instances (MLflow caches one per URI) is left."""

    close_backends()
    forget_store_instances()


def _in_process(
    bucket: BucketInfo, call: Callable[[], T], spool: Path | None = None, cache: Path | None = None
) -> T:
    """``call()`` here as in a new process: the bucket's environment, fresh
    Backends, and an empty cache and a spool folder of its own unless given."""
    with pytest.MonkeyPatch.context() as env, tempfile.TemporaryDirectory() as state:
        for name, value in bucket.env.items():
            env.setenv(name, value)
        env.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(spool or Path(state) / "spool"))
        env.setenv("MLFLOW_BUCKET_CACHE_DIR", str(cache or Path(state) / "cache"))
        _fresh()
        try:
            return call()
        finally:
            _fresh()


def _batches_left(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*.json"))


# -- a crash ---------------------------------------------------------------------


def test_points_logged_before_a_sigkill_reach_the_bucket_once(
    bucket: BucketInfo, tmp_path: Path
) -> None:
    """Killed right after log_metric returned, before any upload: the next
    process that opens the store uploads the points, exactly once."""
    uri = f"{bucket.url}/team"
    # Nothing is uploaded in the writer's lifetime: its spool holds it all.
    env = child_env(bucket.env, tmp_path / "machine", {"MLFLOW_BUCKET_FLUSH_INTERVAL": "3600"})
    writer = start("log_then_hang", {"uri": uri, "experiment": "e", "points": 50}, env)
    ready = wait_line(writer, "READY")
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    eid, run_id = ready["experiment_id"], ready["run_id"]
    assert _batches_left(tmp_path / "machine" / "spool")
    assert _in_process(bucket, lambda: count_log(uri, eid))["points"] == 0

    # The next process on this machine (same spool folder): a reader that opens the store.
    seen = _in_process(bucket, lambda: read_all(uri, "e"), spool=tmp_path / "machine" / "spool")
    assert seen["runs"][run_id]["params"] == {"p": "v"}
    assert [p[0] for p in seen["runs"][run_id]["hist"]["m"]] == list(range(50))

    counts = _in_process(bucket, lambda: count_log(uri, eid))
    assert counts["points"] == 50 and counts["point_dups"] == 0 and counts["batch_dups"] == 0
    assert counts["index_batch_dups"] == 0
    assert _batches_left(tmp_path / "machine" / "spool") == []


def test_a_kill_between_upload_and_cleanup_uploads_nothing_twice(
    bucket: BucketInfo, tmp_path: Path
) -> None:
    """Killed after its batch was appended but before its spool files were
    removed: the recovering process finds the batch in the log, and does
    not append it again."""
    uri = f"{bucket.url}/team"
    paused = tmp_path / "paused"
    env = child_env(bucket.env, tmp_path / "machine", {"MLFLOW_BUCKET_FLUSH_INTERVAL": "3600"})
    args = {"uri": uri, "experiment": "e", "points": 20, "pause": str(paused)}
    writer = start("log_then_hang", args, env)
    ready = wait_line(writer, "READY")
    deadline = time.monotonic() + 120
    while not paused.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert paused.exists(), "the writer never uploaded"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert _batches_left(tmp_path / "machine" / "spool")

    seen = _in_process(bucket, lambda: read_all(uri, "e"), spool=tmp_path / "machine" / "spool")
    assert [p[0] for p in seen["runs"][ready["run_id"]]["hist"]["m"]] == list(range(20))
    counts = _in_process(bucket, lambda: count_log(uri, ready["experiment_id"]))
    assert counts["points"] == 20 and counts["point_dups"] == 0
    assert counts["batch_dups"] == 0 and counts["index_batch_dups"] == 0
    assert _batches_left(tmp_path / "machine" / "spool") == []


@pytest.fixture(scope="module")
def twin_s3() -> Iterator[S3Emulator]:
    """A second S3 service: another moto server, on another port."""
    with S3Emulator() as emulator:
        yield emulator


def test_a_spool_left_on_one_endpoint_is_uploaded_there_and_not_where_the_uri_is_the_same(
    s3_emulator: S3Emulator, twin_s3: S3Emulator, tmp_path: Path
) -> None:
    """``s3://<bucket>/team`` on two S3-compatible services (two emulators, one bucket
    name and prefix, AWS_ENDPOINT_URL naming each). A writer killed while logging on A
    leaves its spool; an MLflow process on the same machine opening the URI on B uploads
    none of it there, and the next one on A uploads it, exactly once."""
    bucket = unique_bucket_name("twin")
    s3_emulator.create_bucket(bucket)
    twin_s3.create_bucket(bucket)
    a = s3_bucket_info(bucket, s3_emulator.endpoint)
    b = s3_bucket_info(bucket, twin_s3.endpoint)
    uri = f"s3://{bucket}/team"
    spool = tmp_path / "machine" / "spool"
    env = child_env(a.env, tmp_path / "machine", {"MLFLOW_BUCKET_FLUSH_INTERVAL": "3600"})
    writer = start("log_then_hang", {"uri": uri, "experiment": "e", "points": 30}, env)
    ready = wait_line(writer, "READY")
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    eid, run_id = ready["experiment_id"], ready["run_id"]
    left = _batches_left(spool)
    assert left

    # The next MLflow process on this machine opens the URI on B.
    assert _in_process(b, lambda: list_experiments(uri), spool=spool) == {"Default": "0"}
    assert _in_process(b, lambda: count_log(uri, eid))["objects"] == 0
    assert _batches_left(spool) == left

    # The next one on A uploads what the writer logged.
    seen = _in_process(a, lambda: read_all(uri, "e"), spool=spool)
    assert seen["runs"][run_id]["params"] == {"p": "v"}
    assert [p[0] for p in seen["runs"][run_id]["hist"]["m"]] == list(range(30))
    counts = _in_process(a, lambda: count_log(uri, eid))
    assert counts["points"] == 30 and counts["point_dups"] == 0 and counts["batch_dups"] == 0
    assert _batches_left(spool) == []


# -- a clean exit ----------------------------------------------------------------


@pytest.mark.parametrize("end", [False, True], ids=["run-left-open", "end_run"])
def test_a_script_that_just_exits_has_uploaded_everything(
    bucket: BucketInfo, tmp_path: Path, end: bool
) -> None:
    """A script logs and ends, with or without mlflow.end_run(): its run is
    FINISHED and every point is in the bucket when the process is gone,
    uploaded by the process itself (the reader has a spool of its own, so
    no recovery could cover for it)."""
    uri = f"{bucket.url}/team"
    # No upload before the exit: the exit hooks do it all.
    env = child_env(bucket.env, tmp_path / "machine", {"MLFLOW_BUCKET_FLUSH_INTERVAL": "3600"})
    proc = start("log_and_exit", {"uri": uri, "experiment": "e", "points": 30, "end": end}, env)
    result = finish(proc)
    assert _batches_left(tmp_path / "machine" / "spool") == []

    def read() -> Any:
        client = MlflowClient(uri)
        run_ = client.get_run(result["run_id"])
        return run_.info.status, run_.data.params, client.get_metric_history(run_.info.run_id, "m")

    status, params, history = _in_process(bucket, read)
    assert status == "FINISHED"
    assert params == {"p": "v"}
    assert [m.step for m in history] == list(range(30))


# -- an unreachable bucket -------------------------------------------------------


@pytest.fixture
def proxied(bucket: BucketInfo, fault_proxy: Any) -> Iterator[tuple[BucketInfo, Any]]:
    proxy = fault_proxy(bucket.endpoint)
    yield bucket.via(proxy), proxy
    proxy.clear()


def test_logging_goes_on_while_every_request_hangs(
    proxied: tuple[BucketInfo, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request to the bucket hangs: log calls still return (they wait
    for a refresh at most REFRESH_WAIT, once), and what they logged all
    arrives once the bucket answers again."""
    bucket, proxy = proxied
    uri = f"{bucket.url}/team"
    for name, value in bucket.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_BUCKET_REFRESH_INTERVAL", "0.1")
    monkeypatch.setenv("MLFLOW_BUCKET_FLUSH_INTERVAL", "0.1")
    _fresh()
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    client.log_param(run_id, "p", "v")
    assert client._tracking_client.store.flush(60)

    proxy.stall(3600)  # until clear()
    done = threading.Event()
    errors: list[BaseException] = []

    def train() -> None:
        try:
            for step in range(20):
                time.sleep(0.15)  # each call finds the views due for a refresh
                client.log_metric(run_id, "m", float(step), step=step)
            client.set_terminated(run_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=train, daemon=True).start()
    # Not a timing assertion: with the bucket hanging, a call that waited
    # on it would never return; this only bounds how long we look.
    returned = done.wait(120)
    stats = proxy.stats()
    proxy.clear()
    assert returned, "logging hung on an unreachable bucket"
    assert not errors, errors
    assert stats["in_flight"] > 0  # the bucket was still hanging when training ended
    assert client._tracking_client.store.flush(120)

    def read() -> Any:
        c = MlflowClient(uri)
        return c.get_run(run_id).info.status, [m.step for m in c.get_metric_history(run_id, "m")]

    status, steps = _in_process(bucket, read)
    assert status == "FINISHED" and steps == list(range(20))


# -- seeing new data ---------------------------------------------------------------


def test_other_processes_see_new_points_within_flush_and_refresh_intervals(
    bucket: BucketInfo, tmp_path: Path, record_property: Any
) -> None:
    """A writer process logs points one by one (each visible to itself at
    once); this process, another reader, polls its metric history. Records
    the delays; asserts only that every point shows up."""
    uri = f"{bucket.url}/team"
    points = 4
    writer = start(
        "log_and_watch",
        {"uri": uri, "experiment": "e", "points": points},
        child_env(bucket.env, tmp_path / "writer"),
    )
    run_id = wait_line(writer, "READY")["run_id"]
    seen_at: dict[int, float] = {}
    with pytest.MonkeyPatch.context() as env:
        for name, value in bucket.env.items():
            env.setenv(name, value)
        _fresh()
        client = MlflowClient(uri)
        deadline = time.monotonic() + 120
        while len(seen_at) < points and time.monotonic() < deadline:
            try:
                history = client.get_metric_history(run_id, "m")
            except MlflowException:  # the run itself has not shown up yet
                history = []
            now = time.time()
            for metric in history:
                seen_at.setdefault(metric.step, now)
            time.sleep(0.02)
    logged = {line["step"]: line["at"] for line in _tagged(finish_lines(writer), "LOGGED")}
    assert sorted(seen_at) == sorted(logged) == list(range(points))
    delays = [round(seen_at[s] - logged[s], 2) for s in range(points)]
    record_property("visibility_delays_s", delays)
    print(f"\nvisibility delays on {bucket.scheme} (s):", delays)


def test_a_created_run_is_found_by_another_process_before_the_flush_interval(
    bucket: BucketInfo, tmp_path: Path
) -> None:
    """A run id handed to another process at once (``mlflow run`` creates the
    run, then starts the entry point with MLFLOW_RUN_ID) must be found there:
    the creation is uploaded right away, not at the writer's next interval
    (an hour here), while the writer goes on without waiting for it."""
    uri = f"{bucket.url}/team"
    writer = start(
        "log_then_hang",
        {"uri": uri, "experiment": "handoff", "points": 0},
        child_env(bucket.env, tmp_path / "writer", {"MLFLOW_BUCKET_FLUSH_INTERVAL": "3600"}),
    )
    try:
        run_id = wait_line(writer, "READY")["run_id"]

        def find() -> str:
            client = MlflowClient(uri)
            deadline = time.monotonic() + 120  # far below the writer's interval
            while True:
                try:
                    return str(client.get_run(run_id).info.status)
                except MlflowException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

        assert _in_process(bucket, find) == "RUNNING"
    finally:
        writer.kill()
        writer.wait()


def _tagged(lines: list[str], tag: str) -> list[Any]:
    return [json.loads(line[len(tag) + 1 :]) for line in lines if line.startswith(f"{tag} ")]


# -- damaged and foreign objects -----------------------------------------------------

GARBAGE = b"this is not an mlflow-bucket object"


def _populate(uri: str) -> dict[str, Any]:
    """An experiment with a checkpoint (and history side objects) and a tail after it."""
    client = MlflowClient(uri)
    eid = client.create_experiment("e")
    runs = []
    for i in range(6):
        run_id = client.create_run(eid, run_name=f"r{i}").info.run_id
        client.log_param(run_id, "i", str(i))
        for step in range(3):
            client.log_metric(run_id, "m", float(step), step=step)
        client.set_terminated(run_id)
        runs.append(run_id)
        store = client._tracking_client.store
        assert store.flush(60)
        if i == 3:
            store.backend.experiment_view(eid).checkpoints.compact()
    return {"eid": eid, "runs": runs}


def _next_number(store: Any, root: str) -> str:
    log = Log(store, root, cache=None)
    return log.key(log.tail() + 1)


def _damage(uri: str, eid: str, run_id: str, kind: str) -> str:
    """Damage or add one object; returns its key (relative to the store)."""
    store = open_store(uri)
    exp = f"tracking/exp/{eid}"
    if kind == "log object":
        key = _next_number(store, exp)
        store.create(key, GARBAGE)
    elif kind == "entry of a wrong shape":
        # A valid log object whose entry would make the fold fail.
        log = Log(store, exp, cache=None)
        bad = {"op": "run.log", "id": run_id, "metrics": [["m", "x"]], "ts": 1, "w": "w"}
        key = log.key(log.append([bad]))
    elif kind == "foreign name in log/":
        key = f"{exp}/log/notes.txt"
        store.put(key, b"hello")
    elif kind == "checkpoint":
        key = max(info.key for info in store.list_objects(f"{exp}/ckpt/"))
        store.put(key, GARBAGE)
    elif kind == "side object":
        key = min(info.key for info in store.list_objects(f"{exp}/side/"))
        store.put(key, GARBAGE)
    elif kind == "index":
        key = _next_number(store, "tracking/index")
        store.create(key, GARBAGE)
    elif kind == "experiments log":
        key = _next_number(store, "tracking/experiments")
        store.create(key, GARBAGE)
    else:
        raise ValueError(kind)
    return key


@pytest.mark.parametrize(
    "kind",
    [
        "log object",
        "entry of a wrong shape",
        "foreign name in log/",
        "checkpoint",
        "side object",
        "index",
        "experiments log",
    ],
)
def test_a_damaged_or_foreign_object_is_skipped_with_a_warning_naming_it(
    bucket: BucketInfo, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"{bucket.url}/team"
    made = _in_process(bucket, lambda: _populate(uri))
    key = _in_process(bucket, lambda: _damage(uri, made["eid"], made["runs"][0], kind))

    def read() -> Any:
        client = MlflowClient(uri)
        client.get_run(made["runs"][0])  # through the index: nothing loaded yet
        exp = client.get_experiment_by_name("e")
        found = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)
        return {
            r.info.run_id: (
                r.info.status,
                r.data.params,
                r.data.metrics,
                [m.step for m in client.get_metric_history(r.info.run_id, "m")],
            )
            for r in found
        }

    with pytest.warns(CorruptObjectWarning, match=key):
        seen = _in_process(bucket, read)
    assert f"{bucket.bucket}/team/{key}" in caplog.text
    assert sorted(seen) == sorted(made["runs"])
    for i, run_id in enumerate(made["runs"]):
        status, params, metrics, steps = seen[run_id]
        assert (status, params, metrics) == ("FINISHED", {"i": str(i)}, {"m": 2.0})
        if kind == "side object" and steps != [0, 1, 2]:
            assert steps == []  # this run's history was in the damaged object
            continue
        assert steps == [0, 1, 2]
    if kind == "side object":
        assert sum(1 for s in seen.values() if s[3] == []) == 1

        # And the experiment can still be checkpointed, with what is readable:
        # each run logs a point more, so the checkpoint merges every history.
        def log_and_checkpoint() -> Any:
            client = MlflowClient(uri)
            for run_id in made["runs"]:
                client.log_metric(run_id, "m", 3.0, step=3)
            store = client._tracking_client.store
            assert store.flush(60)
            return store.backend.experiment_view(made["eid"]).checkpoints.compact()

        with pytest.warns(CorruptObjectWarning, match=key):
            assert _in_process(bucket, log_and_checkpoint) > 0
        again = _in_process(bucket, read)
        for run_id, (_, _, metrics, steps) in again.items():
            assert metrics == {"m": 3.0}
            assert steps == ([3] if seen[run_id][3] == [] else [0, 1, 2, 3])


def test_damaged_copies_in_the_local_cache_are_read_again_from_the_bucket(
    bucket: BucketInfo, tmp_path: Path
) -> None:
    """The cache holds copies of immutable objects; one damaged on local disk
    (a crash mid-write, a bad disk) must not hide a good object."""
    uri = f"{bucket.url}/team"
    cache = tmp_path / "cache"
    made = _in_process(bucket, lambda: _populate(uri), cache=cache)
    copies = [p for p in cache.rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert len(copies) > 10  # log objects, a checkpoint, its history objects
    for path in copies:
        path.write_bytes(GARBAGE)

    def read() -> Any:
        client = MlflowClient(uri)
        out = {}
        for r in client.search_runs([made["eid"]]):
            history = client.get_metric_history(r.info.run_id, "m")
            out[r.info.run_id] = (r.data.params, [m.step for m in history])
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptObjectWarning)
        seen = _in_process(bucket, read, cache=cache)
    assert seen == {r: ({"i": str(i)}, [0, 1, 2]) for i, r in enumerate(made["runs"])}
