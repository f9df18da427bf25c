"""Helpers of the command-line tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import close_backends


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


def log_runs(uri: str, experiment: str, count: int, *, metric_steps: int = 3) -> list[str]:
    """Log ``count`` runs with MLflow's client, upload them, end the 'process'."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment)
        ids = []
        for i in range(count):
            with mlflow.start_run() as run:
                mlflow.log_param("i", i)
                for step in range(metric_steps):
                    mlflow.log_metric("loss", 1.0 / (step + 1 + i), step=step)
            ids.append(run.info.run_id)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    end_process()
    return ids


def end_process() -> None:
    """What the end of a process does: upload and checkpoint, then forget every store.

    MLflow caches one store instance per URI, and a store holds its Backend:
    both go, so the next use starts as a new process would.
    """

    close_backends()
    forget_store_instances()
