"""The engine's storage failures as MLflow's own errors, at the stores' edge.

MLflow's client, fluent API and server know MlflowException and its error
codes: a StorageError reaching them is a foreign exception to a script and
an HTTP 500 from the server. A refused write (403) becomes
PERMISSION_DENIED, a bucket still failing after the retry policy gave up
becomes TEMPORARILY_UNAVAILABLE; the message keeps the operation and URL.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
    ErrorCode,
)

from mlflow_bucket.log.codec import FormatTooNew
from mlflow_bucket.storage import (
    InvalidKey,
    NotFound,
    PermissionDenied,
    StorageError,
    TransientError,
)

C = TypeVar("C", bound=type)

# Public methods call each other and catch storage errors (a lost
# create-if-absent race, say): only the outermost call converts.
_depth = threading.local()


def error_code(exc: BaseException) -> int:
    """The one map from the engine's failures to MLflow's error codes, used by the
    tracking store, the registry and the artifact repository alike: the code
    MLflow's own stores and repositories give for the same failure."""
    if isinstance(exc, MlflowException):
        return int(ErrorCode.Value(exc.error_code))
    if isinstance(exc, PermissionDenied):
        return PERMISSION_DENIED
    if isinstance(exc, TransientError):
        return TEMPORARILY_UNAVAILABLE
    if isinstance(exc, NotFound):
        return RESOURCE_DOES_NOT_EXIST
    if isinstance(exc, InvalidKey):
        return INVALID_PARAMETER_VALUE
    if isinstance(exc, FormatTooNew):
        return INVALID_STATE  # written by a newer release: upgrade (as a newer marker)
    return INTERNAL_ERROR


def as_mlflow_error(exc: StorageError, what: str = "bucket store") -> MlflowException:
    return MlflowException(f"{what}: {exc}", error_code(exc))


def _converting(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        try:
            return fn(*args, **kwargs)
        except StorageError as exc:
            if depth:
                raise
            raise as_mlflow_error(exc) from exc
        finally:
            _depth.n = depth

    return call


# Private methods of a store that MLflow calls itself: `mlflow gc`, the server.
MLFLOW_PRIVATE_CALLS = frozenset(
    {
        "_search_datasets",
        "_get_deleted_runs",
        "_hard_delete_run",
        "_get_deleted_logged_models",
        "_hard_delete_logged_model",
        "_hard_delete_experiment",
    }
)


def _called_by_mlflow(cls: type, name: str) -> bool:
    """Public, a private hook overriding a base's (MLflow's inherited search_runs
    calls the store's _search_runs), or a private method MLflow calls directly."""
    if not name.startswith("_"):
        return True
    if name.startswith("__"):
        return False
    return name in MLFLOW_PRIVATE_CALLS or any(name in vars(base) for base in cls.__mro__[1:])


def storage_errors_as_mlflow(cls: C) -> C:
    """Class decorator: every method of ``cls`` MLflow calls raises MlflowException
    instead of the engine's StorageError (only the outermost call converts)."""
    for name, attr in list(vars(cls).items()):
        if inspect.isfunction(attr) and _called_by_mlflow(cls, name):
            setattr(cls, name, _converting(attr))
    return cls
