"""Train two models, compare them, register them, promote the better one, serve the champion.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    python examples/compare_and_promote.py

Plain MLflow code, except for one command: ``mlflow-bucket promote MODEL
--metric accuracy``, which moves the ``champion`` alias to a version only
if it beats the version holding it, and records why on the version (a CI
job would run the same command; docs/registry.md). The registry lives in
the same bucket as the runs: MLflow uses the tracking URI for it unless
MLFLOW_REGISTRY_URI says otherwise. Run it twice: the second round's models
are no better than the champion, so the alias stays. With nothing
configured it logs into a local emulator bucket (default_store.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
from default_store import bucket_store
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

MODEL = os.environ.get("EXAMPLE_MODEL_NAME", "iris-classifier")


def main() -> None:
    # The promote command runs in another process, which must see each metric
    # as soon as it is logged: upload inside the logging calls, not a moment later.
    os.environ.setdefault("MLFLOW_BUCKET_SYNC", "1")
    X, y = load_iris(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
    mlflow.set_experiment("compare-and-promote")

    candidates = {
        # A baseline that always answers the most frequent class: clearly worse.
        "baseline": DummyClassifier(strategy="most_frequent"),
        "logistic-regression": LogisticRegression(max_iter=500),
    }
    for label, estimator in candidates.items():
        with mlflow.start_run(run_name=label):
            estimator.fit(X_train, y_train)
            accuracy = accuracy_score(y_test, estimator.predict(X_test))
            mlflow.log_param("estimator", label)
            info = mlflow.sklearn.log_model(
                estimator,
                name="model",
                registered_model_name=MODEL,
                input_example=X_test.head(2),
            )
            # Logged against the model too (MLflow 3): promote reads it from there.
            mlflow.log_metric("accuracy", accuracy, model_id=info.model_id)
        version = info.registered_model_version
        print(f"{label}: accuracy {accuracy:.3f}, registered as {MODEL} version {version}")
        decision = promote(version)
        print(f"  promote: {decision['outcome']} ({decision['reason']})")

    # Compare every run of the experiment so far, best first.
    runs = mlflow.search_runs(order_by=["metrics.accuracy DESC"], output_format="list")
    print("runs by accuracy:")
    for run in runs:
        print(f"  {run.data.params['estimator']:20} {run.data.metrics['accuracy']:.3f}")

    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    print(f"champion: {MODEL} version {champion.version} (run {champion.run_id})")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    predictions = model.predict(X_test.head(5))
    truth = list(y_test.head(5))
    print(f"predictions for 5 test rows: {[int(p) for p in predictions]}; truth: {truth}")


def promote(version: str | int) -> dict:
    """``mlflow-bucket promote``, as a CI job would run it; its decision, as JSON."""
    # -m with this interpreter: the same installation as this script.
    command = [sys.executable, "-m", "mlflow_bucket.cli", "promote", MODEL]
    command += ["--metric", "accuracy", "--higher-is-better", "--candidate", str(version)]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True)
    # Exit codes: 0 promoted (or already champion), 3 not better; others are failures.
    if result.returncode not in (0, 3):
        raise SystemExit(f"mlflow-bucket promote failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


if __name__ == "__main__":
    with bucket_store():
        main()
