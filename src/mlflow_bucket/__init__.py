"""mlflow-bucket: one cloud bucket as a team's whole MLflow backend.

This package is the engine: object stores, retries, the log and its
checkpoints. It knows nothing of MLflow; the MLflow plugins live in
``mlflow_bucket_plugins``.
"""

__version__ = "0.1.0"
