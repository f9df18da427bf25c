"""One map from the engine's failures to MLflow's error codes, for every store."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins import artifacts
from mlflow_bucket_plugins.storage_errors import storage_errors_as_mlflow

from mlflow_bucket.storage import (
    InvalidKey,
    NotFound,
    PermissionDenied,
    StorageError,
    TransientError,
)

CASES = [
    (TransientError("GET gs://b/k: 503 after 12 attempts"), "TEMPORARILY_UNAVAILABLE"),
    (PermissionDenied("PUT gs://b/k: 403"), "PERMISSION_DENIED"),
    (NotFound("GET gs://b/k: 404"), "RESOURCE_DOES_NOT_EXIST"),
    (InvalidKey("a/../b"), "INVALID_PARAMETER_VALUE"),
    (StorageError("GET gs://b/k: 400"), "INTERNAL_ERROR"),
]


@storage_errors_as_mlflow
class _Store:
    def call(self, exc: Exception) -> None:
        raise exc


@pytest.mark.parametrize(("exc", "code"), CASES)
def test_stores_and_artifacts_give_one_code_per_failure(exc: Exception, code: str) -> None:
    with pytest.raises(MlflowException) as from_store:
        _Store().call(exc)
    with pytest.raises(MlflowException) as from_artifacts, artifacts._mlflow_errors("download"):
        raise exc
    assert from_store.value.error_code == from_artifacts.value.error_code == code
