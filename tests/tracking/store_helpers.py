"""Helpers for the tracking store's tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import forget_backends


def reopen(uri: str) -> Any:
    """An MlflowClient on ``uri`` as a new process would have it: fresh Backends, cold reads.

    MLflow caches one store instance per URI, and a store holds its Backend:
    both go, after every queued write is flushed to the bucket.
    """
    from mlflow import MlflowClient

    forget_backends()
    forget_store_instances()
    return MlflowClient(uri)
