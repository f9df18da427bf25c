"""Many processes writing one store at once lose nothing and duplicate nothing.

Every writer is its own Python process running plain MLflow code against a
gs:// or s3:// URI on the emulators (which honour create-if-absent and
serve requests concurrently); every check is made by a fresh process with
an empty cache, through MlflowClient, and by counting the entries of the
raw log objects (the fold would hide a point uploaded twice; the count
does not).

Profiles (processes x runs x metric steps, per emulator):

- default: 4 x 5 x 10, so that processes still race one another for log
  numbers (each one's flusher appends every 2 s);
- full (``--run-slow``): 8 x 200 x 100, the issue's size.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mlflow import MlflowClient
from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import close_backends
from tracking_workers import (
    child_env,
    count_log,
    expected_value,
    finish,
    list_experiments,
    run,
    start,
    wait_line,
)

from mlflow_bucket.testing.pytest_plugin import (
    BucketInfo,
    gcs_bucket_info,
    s3_bucket_info,
    unique_bucket_name,
)

pytestmark = pytest.mark.emulator

BACKENDS = ["gcs", "s3"]
T = TypeVar("T")


def _bucket(request: pytest.FixtureRequest, backend: str) -> BucketInfo:
    info: BucketInfo = request.getfixturevalue(f"{backend}_bucket")
    return info


def _fresh() -> None:
    """The previous "process" exits (uploads, stops its flusher); none of its
    Backends or store instances (MLflow caches one per URI) is left."""

    close_backends()
    forget_store_instances()


def _in_process(bucket: BucketInfo, call: Callable[[], T]) -> T:
    """``call()`` in this process, as a new one: the bucket's environment, a fresh
    Backend, an empty cache."""
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


def _writers_log_runs(
    bucket: BucketInfo, tmp_path: Path, processes: int, runs: int, steps: int
) -> None:
    uri = f"{bucket.url}/team"
    writers = child_env(bucket.env, tmp_path / "writers")
    eid = _in_process(bucket, lambda: MlflowClient(uri).create_experiment("shared"))

    go = tmp_path / "go"
    procs = [
        start(
            "log_runs",
            {
                "uri": uri,
                "experiment": "shared",
                "worker": w,
                "runs": runs,
                "steps": steps,
                "go": str(go),
            },
            writers,
        )
        for w in range(processes)
    ]
    for proc in procs:
        wait_line(proc, "READY")
    go.touch()  # all at once
    started = time.monotonic()
    results = [finish(proc, timeout=3600) for proc in procs]
    logged = time.monotonic()
    assert {r["experiment_id"] for r in results} == {eid}

    # A new process with an empty cache sees every run, param, tag and point.
    seen = run(
        "read_all", {"uri": uri, "experiment": "shared"}, child_env(bucket.env, tmp_path / "r")
    )
    read = time.monotonic()
    print(
        f"\n{bucket.scheme}: {processes} x {runs} x {steps}: logging {logged - started:.0f} s, "
        f"a new reader {read - logged:.0f} s"
    )
    by_name = {doc["name"]: doc for doc in seen["runs"].values()}
    assert len(seen["runs"]) == len(by_name) == processes * runs
    for w in range(processes):
        for r in range(runs):
            doc = by_name[f"w{w}-r{r}"]
            assert doc["status"] == "FINISHED"
            assert doc["params"] == {"worker": str(w), "run": str(r), "lr": str(0.1 / (r + 1))}
            assert doc["tags"] == {"team": "t", "who": f"w{w}"}
            history = doc["hist"]["loss"]
            assert [p[0] for p in history] == list(range(steps))
            assert [p[1] for p in history] == [expected_value(w, r, s) for s in range(steps)]
            assert doc["metrics"] == {"loss": expected_value(w, r, steps - 1)}

    # In the log itself: each of them written exactly once.
    counts = _in_process(bucket, lambda: count_log(uri, eid))
    assert counts["runs"] == processes * runs and counts["create_dups"] == 0
    assert counts["points"] == processes * runs * steps and counts["point_dups"] == 0
    assert counts["params"] == processes * runs * 3 and counts["param_dups"] == 0
    assert counts["batch_dups"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_logging_into_one_experiment_lose_nothing(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    _writers_log_runs(_bucket(request, backend), tmp_path, processes=4, runs=5, steps=10)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_processes_at_full_size_lose_nothing(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    _writers_log_runs(_bucket(request, backend), tmp_path, processes=8, runs=200, steps=100)


@pytest.fixture(scope="module", params=BACKENDS)
def race(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two processes race: they create the same names at the same instant, then
    both run ``mlflow.set_experiment("shared")`` (see tracking_workers.race)."""
    emulator = request.getfixturevalue(f"{request.param}_emulator")
    name = unique_bucket_name()
    emulator.create_bucket(name)
    info = (gcs_bucket_info if request.param == "gcs" else s3_bucket_info)(name, emulator.endpoint)
    tmp_path = tmp_path_factory.mktemp("race")
    uri = f"{info.url}/team"
    names = [f"race-{i}" for i in range(10)]
    go, go_set = tmp_path / "go", tmp_path / "go-set"
    args = {"uri": uri, "names": names, "go": str(go), "go_set": str(go_set)}
    env = child_env(info.env, tmp_path / "state")
    procs = [start("race", args, env) for _ in range(2)]
    for proc in procs:
        wait_line(proc, "READY")
    go.touch()
    for proc in procs:  # both found no "shared" and wait to create it
        wait_line(proc, "READY")
    go_set.touch()
    results = [finish(proc) for proc in procs]
    seen = _in_process(info, lambda: list_experiments(uri))
    return {"names": names, "results": results, "seen": seen}


def test_racing_creates_of_one_name_make_one_experiment(race: dict[str, Any]) -> None:
    """One process wins each name, the other gets MLflow's RESOURCE_ALREADY_EXISTS."""
    names, seen = race["names"], race["seen"]
    assert set(seen) == {"Default", "shared", *names}
    for name in names:
        outcomes = [r["creates"][name] for r in race["results"]]
        assert sorted(map(str, outcomes)) == sorted(
            [str({"id": seen[name]}), str({"error": "RESOURCE_ALREADY_EXISTS"})]
        ), (name, outcomes)


def test_racing_set_experiment_hands_both_the_one_experiment(race: dict[str, Any]) -> None:
    eid = race["seen"]["shared"]
    sets = [r["set"] for r in race["results"]]
    assert [s["returned"] for s in sets] == [eid, eid]
    assert sorted(s["create"] for s in sets) == ["RESOURCE_ALREADY_EXISTS", "created"]
    loser = next(s for s in sets if s["create"] == "RESOURCE_ALREADY_EXISTS")
    if loser["run_experiment"] != eid:
        # MLflow's own code (mlflow/tracking/fluent.py, set_experiment): on
        # RESOURCE_ALREADY_EXISTS it returns the experiment without making it
        # the active one, so the loser's next start_run goes to experiment 0,
        # whatever the store. Passes once MLflow activates it there too.
        assert loser["run_experiment"] == "0"
        pytest.xfail("MLflow's set_experiment does not activate the experiment it lost a race for")
    assert [s["run_experiment"] for s in sets] == [eid, eid]
