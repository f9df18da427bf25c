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


class _Base:
    """As MLflow's AbstractStore: a public method inherited as is, calling a private hook."""

    def search(self, exc: Exception) -> None:
        self._search(exc)

    def _search(self, exc: Exception) -> None:
        raise NotImplementedError


@storage_errors_as_mlflow
class _Hooked(_Base):
    def _search(self, exc: Exception) -> None:
        raise exc

    def _hard_delete_run(self, exc: Exception) -> None:  # what `mlflow gc` calls
        raise exc

    def _helper(self, exc: Exception) -> None:  # ours alone: left as it is
        raise exc


def test_hooks_and_private_entry_points_mlflow_calls_convert_too() -> None:
    """MLflow's inherited search_runs calls the store's _search_runs, and `mlflow gc`
    and the server call a few private methods directly: a storage error there
    reached MLflow unconverted (the server answered 500)."""
    with pytest.raises(MlflowException) as err:
        _Hooked().search(TransientError("list gs://b/k: 503"))
    assert err.value.error_code == "TEMPORARILY_UNAVAILABLE"
    with pytest.raises(MlflowException):
        _Hooked()._hard_delete_run(StorageError("x"))
    with pytest.raises(StorageError):
        _Hooked()._helper(StorageError("x"))
