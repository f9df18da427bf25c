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
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
    ErrorCode,
)

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


def storage_errors_as_mlflow(cls: C) -> C:
    """Class decorator: every public method of ``cls`` raises MlflowException
    instead of the engine's StorageError."""
    for name, attr in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(attr):
            setattr(cls, name, _converting(attr))
    return cls
