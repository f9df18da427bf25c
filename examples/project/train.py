"""The project's entry point: trains with the parameters `mlflow run` passes.

`mlflow run` creates the run in the store (the bucket) before starting this
script, and hands it over through MLFLOW_RUN_ID and MLFLOW_TRACKING_URI:
start_run() below continues that run instead of making a new one.
"""

from __future__ import annotations

import argparse

import mlflow
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--n-estimators", type=int, required=True)
    args = parser.parse_args()

    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    with mlflow.start_run() as run:  # the run `mlflow run` created
        # The parameters are logged already, by `mlflow run`.
        model = GradientBoostingClassifier(
            learning_rate=args.learning_rate, n_estimators=args.n_estimators, random_state=0
        ).fit(X_train, y_train)
        accuracy = accuracy_score(y_test, model.predict(X_test))
        mlflow.log_metric("accuracy", accuracy)
        mlflow.log_text(f"accuracy {accuracy:.4f}\n", "report.txt")
    print(f"logged run {run.info.run_id}: accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
