"""Fill a store with what the UI tests look at: plain MLflow client code.

Run as ``python fill_store.py``, with MLFLOW_TRACKING_URI naming the store;
prints one JSON line naming what it logged. ``--one-run NAME`` logs a single
run into the "e2e-sweep" experiment instead (the second writer).
"""

from __future__ import annotations

import argparse
import json
import math

import mlflow
import numpy as np
from mlflow import MlflowClient

SWEEP = "e2e-sweep"
OTHER = "e2e-other"
MODEL = "e2e-classifier"
ALIAS = "champion"
LEARNING_RATES = [0.3, 0.1, 0.03]
IMAGE_WIDTH, IMAGE_HEIGHT = 240, 120


def _gradient_image() -> np.ndarray:
    # A picture the browser must render: a red-to-blue gradient with a green bar.
    x = np.linspace(0, 255, IMAGE_WIDTH, dtype=np.uint8)
    image = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8)
    image[:, :, 0] = x[::-1]
    image[:, :, 2] = x
    image[IMAGE_HEIGHT // 2 - 8 : IMAGE_HEIGHT // 2 + 8, :, 1] = 255
    return image


def fill() -> dict[str, object]:
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment(OTHER)
    with mlflow.start_run(run_name="baseline"):
        mlflow.log_param("kind", "constant")
        mlflow.log_metric("accuracy", 0.5)

    experiment = mlflow.set_experiment(SWEEP)
    runs = {}
    for lr in LEARNING_RATES:
        name = f"lr-{lr}"
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags({"team": "e2e", "owner": "browser-test"})
            mlflow.log_params({"learning_rate": lr, "optimizer": "sgd"})
            for step in range(10):
                mlflow.log_metric("loss", math.exp(-lr * step), step=step)
            # The higher the rate, the better here: a known order to sort by.
            mlflow.log_metric("accuracy", round(0.6 + lr, 3))
            mlflow.log_image(_gradient_image(), "plots/gradient.png")
            runs[name] = run.info.run_id

    best = runs[f"lr-{max(LEARNING_RATES)}"]
    with mlflow.start_run(run_id=best):
        features = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1]])
        labels = np.array([0, 1, 0, 1])
        model = LogisticRegression().fit(features, labels)
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL)
    client = MlflowClient()
    version = info.registered_model_version
    client.set_registered_model_alias(MODEL, ALIAS, str(version))
    return {
        "experiment_id": experiment.experiment_id,
        "runs": runs,
        "model_id": info.model_id,
        "model_version": str(version),
    }


def one_run(name: str) -> dict[str, object]:
    experiment = mlflow.set_experiment(SWEEP)
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_param("learning_rate", 0.01)
        mlflow.log_metric("accuracy", 0.2)
    return {"experiment_id": experiment.experiment_id, "run_id": run.info.run_id}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one-run")
    args = parser.parse_args()
    result = one_run(args.one_run) if args.one_run else fill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
