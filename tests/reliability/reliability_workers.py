"""Child processes of the reliability suite: writers, UI readers, a compactor, crash victims.

    python tests/reliability/reliability_workers.py <command> <json arguments>

Same protocol as tests/tracking/tracking_workers.py, whose parent-side
helpers (start, wait_line, finish, child_env) and readers (read_all,
count_log) are reused: "READY"/"PROGRESS" lines while running, one
"RESULT" line at the end. Each command is plain MLflow code where a user
would write plain MLflow code.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tracking"))

from tracking_workers import _say, _wait_for, expected_value  # noqa: E402


def _stopped(stop: str) -> bool:
    return os.path.exists(stop)


# -- the load ------------------------------------------------------------------------


def load_writer(
    uri: str,
    experiment: str,
    worker: int,
    runs: int,
    steps: int,
    pause: float = 0.0,
    go: str | None = None,
) -> dict[str, Any]:
    """A training script: runs with params and tags, a metric point per step
    (``pause`` seconds of "training" between points).

    Never catches anything: a logging call that raises fails the process,
    and the parent sees it. Says PROGRESS after each run it ended.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    _say("CLOCK", time.time() * 1000)  # this process's clock (maybe faked), for the parent
    _wait_for(go)
    exp = mlflow.set_experiment(experiment)
    for r in range(runs):
        with mlflow.start_run(run_name=f"w{worker}-r{r}"):
            mlflow.log_params({"worker": worker, "run": r})
            mlflow.set_tag("who", f"w{worker}")
            for step in range(steps):
                mlflow.log_metric("loss", expected_value(worker, r, step), step=step)
                if pause:
                    time.sleep(pause)
        _say("PROGRESS", {"run": r})
    return {"experiment_id": exp.experiment_id}


def ui_reader(uri: str, experiment: str, stop: str) -> dict[str, Any]:
    """What the UI does while others train: search the runs, open metric charts.

    Polls until ``stop`` exists and records, instead of raising, every
    error and every step backwards: a run it saw that is no longer found,
    a metric point it saw that is no longer in the history, a run whose
    point count shrank.
    """
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    rng = random.Random(os.getpid())
    seen_runs: set[str] = set()
    seen_points: dict[str, set[int]] = {}
    errors: list[str] = []
    regressions: list[str] = []
    polls = histories = 0
    _say("READY", os.getpid())
    while not _stopped(stop):
        polls += 1
        try:
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                time.sleep(0.2)
                continue
            found: set[str] = set()
            token = None
            while True:
                page = client.search_runs(
                    [exp.experiment_id],
                    run_view_type=ViewType.ALL,
                    max_results=100,
                    page_token=token,
                    order_by=["attributes.start_time DESC"],
                )
                found.update(r.info.run_id for r in page)
                token = page.token
                if not token:
                    break
            lost = seen_runs - found
            if lost:
                regressions.append(f"poll {polls}: {len(lost)} runs seen before are gone")
            seen_runs |= found
            # A chart or two, as a user opening runs does.
            for run_id in rng.sample(sorted(found), min(3, len(found))):
                steps = {m.step for m in client.get_metric_history(run_id, "loss")}
                histories += 1
                before = seen_points.get(run_id, set())
                if not before <= steps:
                    regressions.append(
                        f"poll {polls}: run {run_id} lost points {sorted(before - steps)[:5]}"
                    )
                seen_points[run_id] = before | steps
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
        time.sleep(0.05)
    return {
        "polls": polls,
        "histories": histories,
        "runs_seen": len(seen_runs),
        "errors": errors,
        "regressions": regressions,
    }


def compactor(uri: str, experiment_id: str, retention: float, stop: str) -> dict[str, Any]:
    """Checkpoint and gc the experiment's log over and over until ``stop``.

    Uses the tracking store's own view of the experiment, with a retention
    short enough that gc really deletes log objects readers may be reading.
    """
    from mlflow_bucket_plugins.tracking.backend import backend_for

    from mlflow_bucket.log import Compaction

    backend = backend_for(uri)
    backend.compaction = Compaction(threshold=1, retention=retention, gc=False)
    view = backend.experiment_view(experiment_id)
    rounds = checkpoints = deleted = last = 0
    errors: list[str] = []
    _say("READY", os.getpid())
    while not _stopped(stop):
        rounds += 1
        try:
            # A cold read of the log each round (checkpoint + tail), then a
            # checkpoint at its tail unless one is there already.
            seq = view.checkpoints.compact()
            checkpoints += seq > last
            last = max(last, seq)
            report = view.checkpoints.gc()
            deleted += report.log_objects + report.checkpoints + report.side_objects
            _say("PROGRESS", {"round": rounds})
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
        time.sleep(0.5)
    return {"rounds": rounds, "checkpoints": checkpoints, "deleted": deleted, "errors": errors}


# -- crash victims -------------------------------------------------------------------


def crash_logger(uri: str, experiment: str, steps: int) -> None:
    """Log points and say after each call returned; the parent SIGKILLs it at some point."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    run = mlflow.start_run(run_name="victim")
    mlflow.log_param("p", "v")
    _say("READY", {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id})
    for step in range(steps):
        mlflow.log_metric("m", float(step), step=step)
        _say("LOGGED", step)
        time.sleep(0.002)
    while True:
        time.sleep(3600)


def crash_compactor(uri: str, experiment_id: str) -> None:
    """Checkpoint and gc the experiment in a loop until killed."""
    from mlflow_bucket_plugins.tracking.backend import backend_for

    from mlflow_bucket.log import Compaction

    backend = backend_for(uri)
    backend.compaction = Compaction(threshold=1, retention=0, gc=True)
    view = backend.experiment_view(experiment_id)
    _say("READY", os.getpid())
    n = 0
    while True:
        n += 1
        view.checkpoints.compact()
        view.checkpoints.gc()
        _say("LOGGED", n)


def crash_uploader(uri: str, run_id: str, path: str) -> None:
    """Upload one large artifact to a run until killed (again and again)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    _say("READY", os.getpid())
    n = 0
    while True:
        client.log_artifact(run_id, path, artifact_path=f"up{n}")
        _say("LOGGED", n)
        n += 1


def crash_registrar(uri: str, name: str, run_id: str) -> None:
    """Register versions of one model until killed."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_registered_models(max_results=1)
    _say("READY", os.getpid())
    while True:
        mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
        _say("LOGGED", int(mv.version))


COMMANDS: dict[str, Callable[..., Any]] = {
    "load_writer": load_writer,
    "ui_reader": ui_reader,
    "compactor": compactor,
    "crash_logger": crash_logger,
    "crash_compactor": crash_compactor,
    "crash_uploader": crash_uploader,
    "crash_registrar": crash_registrar,
}


def main() -> None:
    command, raw = sys.argv[1], sys.argv[2]
    try:
        result = COMMANDS[command](**json.loads(raw))
    except BaseException:
        traceback.print_exc()
        raise
    _say("RESULT", result)


if __name__ == "__main__":
    main()
