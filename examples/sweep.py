"""A hyperparameter sweep: worker processes log into one experiment at once.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    python examples/sweep.py                              # SWEEP_WORKERS=8 for more at a time

Each trial runs in its own process, the way a sweep on several machines
would: no lock and no server between them, each process writes its own
objects into the bucket. The parent run groups the trials (the UI nests
them under it), and search_runs picks the best one when all are done.
With nothing configured it logs into a local emulator bucket (default_store.py).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import mlflow
from default_store import bucket_store
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

WORKERS = int(os.environ.get("SWEEP_WORKERS", "3"))
GRID = [
    {"learning_rate": rate, "max_depth": depth, "n_estimators": 30}
    for rate, depth in itertools.product([0.03, 0.1, 0.3], [1, 3])
]


def trial(experiment_id: str, parent_run_id: str, params: dict[str, float]) -> float:
    """One trial, in a worker process: train, and log a run under the sweep's run."""
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    # The tag MLflow itself uses for nested runs: set directly, it needs no
    # lookup of the parent run, which another process is still writing.
    tags = {MLFLOW_PARENT_RUN_ID: parent_run_id, "worker_pid": str(os.getpid())}
    with mlflow.start_run(experiment_id=experiment_id, tags=tags):
        mlflow.log_params(params)
        model = GradientBoostingClassifier(random_state=0, **params).fit(X_train, y_train)
        # Accuracy after each boosting stage: a curve per trial to compare in the UI.
        for stage, predictions in enumerate(model.staged_predict(X_test)):
            mlflow.log_metric("accuracy", accuracy_score(y_test, predictions), step=stage)
    return float(accuracy_score(y_test, model.predict(X_test)))


def main() -> str:
    experiment_id = mlflow.set_experiment("sweep").experiment_id
    with mlflow.start_run(run_name="sweep") as sweep:
        mlflow.log_params({"workers": WORKERS, "trials": len(GRID)})
        # "spawn": a fresh interpreter per worker, as on another machine (forking a
        # process whose uploader thread is running is unsafe).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
            scores = list(pool.map(partial(trial, experiment_id, sweep.info.run_id), GRID))
        # The workers have exited, and a process uploads what it logged as it exits.
        # A fresh search over the bucket sees every trial, whoever logged it.
        best = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{sweep.info.run_id}'",
            order_by=["metrics.accuracy DESC", "params.n_estimators ASC"],
            output_format="list",
        )
        print(f"sweep run {sweep.info.run_id}: {len(best)} trials by {WORKERS} workers")
        winner = best[0]
        mlflow.log_metric("best_accuracy", winner.data.metrics["accuracy"])
        mlflow.set_tag("best_run_id", winner.info.run_id)
    print(f"accuracies: {sorted(round(s, 3) for s in scores)}")
    print(f"best run {winner.info.run_id}: {winner.data.params}")
    print(f"  accuracy {winner.data.metrics['accuracy']:.3f}")
    return sweep.info.run_id


if __name__ == "__main__":
    with bucket_store():
        main()
