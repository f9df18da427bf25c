"""Run this MLflow Project from Python, as `mlflow run` does from the shell.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    mlflow run examples/project --env-manager local -P learning_rate=0.2   # the usual way
    python examples/project/run_project.py                                # the same, from Python

With nothing configured, this script logs into a local emulator bucket
(../default_store.py); `mlflow run` alone would use MLflow's own default
store instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/default_store.py

import mlflow  # noqa: E402
from default_store import bucket_store  # noqa: E402


def main() -> str:
    # The project's command says `python`: make that this interpreter, so the
    # project runs in this environment (what --env-manager local means).
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    submitted = mlflow.projects.run(
        str(HERE),
        parameters={"learning_rate": 0.2, "n_estimators": 30},
        experiment_name="project",
        env_manager="local",
    )
    run = mlflow.get_run(submitted.run_id)
    print(f"project run {run.info.run_id}: {run.info.status}, {run.data.metrics}")
    return run.info.run_id


if __name__ == "__main__":
    with bucket_store():
        main()
