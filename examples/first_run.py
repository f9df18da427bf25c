"""Log one run into the store MLFLOW_TRACKING_URI names: plain MLflow code.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    python examples/first_run.py

With nothing configured it logs into a local emulator bucket (default_store.py).
"""

from __future__ import annotations

import math

import mlflow
from default_store import bucket_store


def main() -> str:
    mlflow.set_experiment("first-steps")
    with mlflow.start_run(run_name="first-run") as run:
        mlflow.set_tags({"team": "ml", "purpose": "example"})
        mlflow.log_params({"learning_rate": 0.05, "epochs": 20})
        for epoch in range(20):
            mlflow.log_metric("loss", math.exp(-epoch / 6), step=epoch)
        mlflow.log_dict({"note": "artifacts land in the same bucket"}, "notes/summary.json")
    print(f"logged run {run.info.run_id} to {mlflow.get_tracking_uri()}")
    return run.info.run_id


if __name__ == "__main__":
    with bucket_store():
        main()
