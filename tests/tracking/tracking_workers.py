"""Child processes for the concurrency, durability and clock tests.

Each command is plain MLflow code (or the engine's log reader, to count
what is really in the bucket), run as its own process:

    python tests/tracking/tracking_workers.py <command> <json arguments>

The environment carries the emulator endpoints and MLFLOW_BUCKET_* folders.
A child prints one JSON line starting with "RESULT " when done; "READY "
lines mark points the parent waits for (to start many at once, or to kill
one at a precise moment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def _say(tag: str, value: Any) -> None:
    sys.stdout.write(f"{tag} {json.dumps(value)}\n")
    sys.stdout.flush()


def _wait_for(go: str | None) -> None:
    """Block until the file ``go`` exists: processes started one by one begin together."""
    if not go:
        return
    _say("READY", os.getpid())
    while not os.path.exists(go):
        time.sleep(0.002)


# -- commands ---------------------------------------------------------------------


def log_runs(
    uri: str,
    experiment: str,
    worker: int,
    runs: int,
    steps: int,
    go: str | None = None,
) -> dict[str, Any]:
    """A training script: runs with params, tags and a metric per step."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    _wait_for(go)
    exp = mlflow.set_experiment(experiment)
    names = []
    for r in range(runs):
        name = f"w{worker}-r{r}"
        with mlflow.start_run(run_name=name):
            mlflow.log_params({"worker": worker, "run": r, "lr": 0.1 / (r + 1)})
            mlflow.set_tags({"team": "t", "who": f"w{worker}"})
            for step in range(steps):
                mlflow.log_metric("loss", expected_value(worker, r, step), step=step)
        names.append(name)
    return {"experiment_id": exp.experiment_id, "runs": names}


def expected_value(worker: int, run: int, step: int) -> float:
    return round(1.0 / (1 + step) + worker + run / 1000, 9)


def race(uri: str, names: list[str], go: str, go_set: str) -> dict[str, Any]:
    """Race another process: create ``names``, then ``mlflow.set_experiment("shared")``.

    The creates start together (after ``go``) and follow each other as fast
    as they can. The set_experiment race is forced: both processes get past
    MLflow's "does it exist?" before either creates (the create waits for
    ``go_set``), so one of them always loses.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow_bucket_plugins.mlflow_compat import tracking_service_client

    TrackingServiceClient = tracking_service_client()

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    client.search_experiments()  # opened and warm: the race is the creates themselves
    _wait_for(go)
    creates: dict[str, Any] = {}
    for name in names:
        try:
            creates[name] = {"id": client.create_experiment(name)}
        except MlflowException as exc:
            creates[name] = {"error": exc.error_code}

    original = TrackingServiceClient.create_experiment
    outcome = {}

    def gated(self: Any, *args: Any, **kwargs: Any) -> Any:
        _wait_for(go_set)
        try:
            created = original(self, *args, **kwargs)
        except MlflowException as exc:
            outcome["create"] = exc.error_code
            raise
        outcome["create"] = "created"
        return created

    TrackingServiceClient.create_experiment = gated  # type: ignore[method-assign]
    exp = mlflow.set_experiment("shared")
    with mlflow.start_run() as run:
        mlflow.log_param("pid", os.getpid())
    return {
        "creates": creates,
        "set": {
            **outcome,
            "returned": exp.experiment_id,
            "run_experiment": run.info.experiment_id,
        },
    }


def list_experiments(uri: str) -> dict[str, str]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    return {
        e.name: e.experiment_id
        for e in MlflowClient(uri).search_experiments(view_type=ViewType.ALL, max_results=1000)
    }


def log_then_hang(uri: str, experiment: str, points: int, pause: str | None = None) -> None:
    """Log, say so after the last call returned, then wait to be killed.

    ``pause``: the run's creation is uploaded first; then the points, by
    one upload that stops after its append, before the spool's cleanup
    (the spool's test hook writes ``pause`` and hangs there).
    """
    import mlflow
    from mlflow_bucket_plugins.tracking.backend import backend_for

    from mlflow_bucket.log.spool import PAUSE_ENV

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    run = mlflow.start_run()
    mlflow.log_param("p", "v")
    if pause:
        assert backend_for(uri).flush(60)
        os.environ[PAUSE_ENV] = pause
    for step in range(points):
        mlflow.log_metric("m", float(step), step=step)
    _say("READY", {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id})
    if pause:
        backend_for(uri).flush(0)  # wakes the flusher
    while True:
        time.sleep(3600)


def log_and_exit(uri: str, experiment: str, points: int, end: bool) -> dict[str, Any]:
    """A script that logs and just ends (with or without ending its run)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    run = mlflow.start_run()
    mlflow.log_param("p", "v")
    for step in range(points):
        mlflow.log_metric("m", float(step), step=step)
    if end:
        mlflow.end_run()
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}


def log_and_watch(uri: str, experiment: str, points: int) -> dict[str, Any]:
    """Log points one by one, each visible here at once; say when each call returned.

    The parent, another process, measures how long each takes to show up
    there. Pauses between points spread them over the flush cycle.
    """
    import random

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    eid = client.create_experiment(experiment)
    run_id = client.create_run(eid).info.run_id
    _say("READY", {"run_id": run_id})
    rng = random.Random(7)
    for step in range(points):
        client.log_metric(run_id, "m", float(step), step=step)
        returned = time.time()
        # Read-your-writes: this process sees it before any upload.
        history = client.get_metric_history(run_id, "m")
        assert [m.step for m in history] == list(range(step + 1)), history
        assert client.get_run(run_id).data.metrics["m"] == float(step)
        _say("LOGGED", {"step": step, "at": returned})
        # Spread the points over the flush cycle.
        time.sleep(rng.uniform(0.3, 2.5))
    return {"run_id": run_id}


def skewed_writer(uri: str, shared_run: str, value: str, go: str) -> dict[str, Any]:
    """Set tag "who" on a shared run when told to, then log a run of its own.

    Run under faketime, its clock is wrong: the register's timestamp must
    still be the store's time; the metric timestamps are its own (data, as
    MLflow logs them).
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    shared = client.get_run(shared_run)  # opened and warm (clock measured)
    backend = client._tracking_client.store.backend
    _wait_for(go)
    client.set_tag(shared_run, "who", value)
    _say("DONE", {"ts": backend._last_ts, "writer": backend.writer})
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=shared.info.experiment_id, run_name=value) as run:
        mlflow.log_param("clock", value)
        for step in range(5):
            mlflow.log_metric("m", float(step), step=step)
    return {"run_id": run.info.run_id, "local_ms": int(time.time() * 1000)}


def late_writer(uri: str, run_id: str, go: str) -> dict[str, Any]:
    """Tag and log to a run while the bucket refuses every request; wait until it all lands."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    client.get_run(run_id)  # opened and warm before the outage
    backend = client._tracking_client.store.backend
    _wait_for(go)
    client.set_tag(run_id, "t", "old")
    stamp = backend._last_ts
    for step in range(10):
        client.log_metric(run_id, "late", float(step), step=step)
    _say("LOGGED", {"ts": stamp, "writer": backend.writer})
    started = time.monotonic()
    assert backend.flush(None)
    return {"waited_s": round(time.monotonic() - started, 1)}


def read_all(uri: str, experiment: str) -> dict[str, Any]:
    """Everything a fresh reader sees of an experiment, through MlflowClient."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {"experiment_id": None, "runs": {}}
    runs: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
        )
        for run in page:
            hist = {
                key: sorted(
                    [m.step, m.value, m.timestamp]
                    for m in client.get_metric_history(run.info.run_id, key)
                )
                for key in run.data.metrics
            }
            runs[run.info.run_id] = {
                "name": run.info.run_name,
                "status": run.info.status,
                "params": run.data.params,
                "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
                "metrics": run.data.metrics,
                "hist": hist,
            }
        token = page.token
        if not token:
            break
    return {"experiment_id": exp.experiment_id, "runs": runs}


def count_log(uri: str, experiment_id: str) -> dict[str, Any]:
    """What the experiment's log objects hold, entry by entry (no fold, no set semantics).

    Counts each metric point and param per run as often as it was written,
    and each batch id as often as it appears: a batch uploaded twice
    would show here even though the fold would hide it.
    """
    from mlflow_bucket.log import Log
    from mlflow_bucket.storage import open_store

    store = open_store(uri)
    log = Log(store, f"tracking/exp/{experiment_id}", cache=None)
    points: Counter[str] = Counter()
    params: Counter[str] = Counter()
    creates: Counter[str] = Counter()
    batches: Counter[str] = Counter()
    objects = 0
    for record in log.records(0):
        objects += 1
        batches.update(record.batches)
        for entry in record.entries:
            if entry.get("op") == "run.create":
                creates[entry["id"]] += 1
            if entry.get("op") != "run.log":
                continue
            for key in entry.get("params") or {}:
                params[f"{entry['id']}/{key}"] += 1
            for point in entry.get("metrics") or []:
                points[f"{entry['id']}/{point[0]}/{point[4]}"] += 1
    index = Log(store, "tracking/index", cache=None)
    index_batches: Counter[str] = Counter()
    for record in index.records(0):
        index_batches.update(record.batches)
    return {
        "index_batch_dups": sum(n - 1 for n in index_batches.values()),
        "objects": objects,
        "points": len(points),
        "point_dups": sum(n - 1 for n in points.values()),
        "params": len(params),
        "param_dups": sum(n - 1 for n in params.values()),
        "runs": len(creates),
        "create_dups": sum(n - 1 for n in creates.values()),
        "batch_dups": sum(n - 1 for n in batches.values()),
    }


COMMANDS: dict[str, Callable[..., Any]] = {
    "log_runs": log_runs,
    "race": race,
    "log_then_hang": log_then_hang,
    "log_and_exit": log_and_exit,
    "skewed_writer": skewed_writer,
    "late_writer": late_writer,
    "read_all": read_all,
    "log_and_watch": log_and_watch,
    "count_log": count_log,
}


# -- the parent's side ------------------------------------------------------------


def child_env(
    env: Mapping[str, str], state: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A child's environment: the bucket's endpoint, its local folders under ``state``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_BUCKET_")}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        out.pop(name, None)
    out.update(env)
    out["MLFLOW_BUCKET_SPOOL_DIR"] = str(state / "spool")
    out["MLFLOW_BUCKET_CACHE_DIR"] = str(state / "cache")
    out["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    # Quiet MLflow's "creating a new experiment" and emoji banners.
    out.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    out.update(extra or {})
    return out


def start(
    command: str,
    args: Mapping[str, Any],
    env: Mapping[str, str],
    prefix: Sequence[str] = (),
) -> subprocess.Popen[str]:
    # stderr to a file: a child that warns a lot must never block on a
    # full pipe while the parent waits for another child.
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        [*prefix, sys.executable, str(HERE), command, json.dumps(args)],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    _ERR[proc.pid] = err
    return proc


_ERR: dict[int, Any] = {}


def stderr_of(proc: subprocess.Popen[str]) -> str:
    err = _ERR.get(proc.pid)
    if err is None:
        return ""
    err.seek(0)
    text: str = err.read()
    return text


def wait_line(proc: subprocess.Popen[str], tag: str, timeout: float = 120) -> Any:
    """The value of the child's next ``tag`` line (the child's stderr on failure)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(f"{tag} "):
            return json.loads(line[len(tag) + 1 :])
    proc.kill()
    proc.communicate()
    err = stderr_of(proc)
    raise AssertionError(f"child gave no {tag} line (exit {proc.returncode}):\n{err[-4000:]}")


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> Any:
    """Wait for the child; its RESULT (its stderr on failure)."""
    return _lines(finish_lines(proc, timeout), "RESULT")[-1]


def finish_lines(proc: subprocess.Popen[str], timeout: float = 600) -> list[str]:
    """Wait for the child; the lines it printed that were not read yet."""
    assert proc.stdout is not None
    stdout = proc.stdout
    # Read through the same text stream wait_line used (communicate() would
    # read the pipe underneath it and lose what that stream buffered), in a
    # thread, so that a child that hangs cannot hang the test.
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stdout.read()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        proc.kill()
        reader.join()
        proc.wait()
        raise AssertionError(f"child timed out:\n{stderr_of(proc)[-4000:]}")
    proc.wait()
    if proc.returncode != 0:
        raise AssertionError(f"child failed (exit {proc.returncode}):\n{stderr_of(proc)[-4000:]}")
    lines = box[0].splitlines()
    if not _lines(lines, "RESULT"):
        err = stderr_of(proc)[-4000:]
        raise AssertionError(f"child printed no result:\n{box[0][-2000:]}\n{err}")
    return lines


def _lines(lines: list[str], tag: str) -> list[Any]:
    return [json.loads(line[len(tag) + 1 :]) for line in lines if line.startswith(f"{tag} ")]


def run(command: str, args: Mapping[str, Any], env: Mapping[str, str], timeout: float = 600) -> Any:
    return finish(start(command, args, env), timeout)


def main() -> None:
    command, raw = sys.argv[1], sys.argv[2]
    result = COMMANDS[command](**json.loads(raw))
    _say("RESULT", result)


if __name__ == "__main__":
    main()
