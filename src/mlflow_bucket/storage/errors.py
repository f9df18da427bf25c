"""Errors raised by the object-store layer.

Every backend maps its client's exceptions onto these, so that the retry
policy and the callers above never see a gcsfs, botocore or OS error type.
Messages always name the operation, the object's URL and, when there was
one, the HTTP status; a client's text can carry a URL with credentials (an
endpoint's ``user:password@``, a signed query), so message and URL are
redacted (``mlflow_bucket.redact``) before anything shows them.
"""

from __future__ import annotations

from ..redact import redact


class StorageError(Exception):
    """An object-store operation failed."""

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        url: str = "",
        status: int | None = None,
    ) -> None:
        self.message = redact(message)
        self.operation = operation
        self.url = redact(url)
        self.status = status
        super().__init__(self._render())

    def _render(self) -> str:
        where = " ".join(part for part in (self.operation, self.url) if part)
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{status}: {self.message}" if where else f"{self.message}{status}"


class TransientError(StorageError):
    """A failure worth retrying: throttling, 5xx, resets, timeouts."""


class NotFound(StorageError, FileNotFoundError):
    """The object (or bucket) does not exist."""


class PreconditionFailed(StorageError):
    """A conditional request's precondition did not hold."""


class AlreadyExists(PreconditionFailed, FileExistsError):
    """create-if-absent lost: another writer created the key first."""


class PermissionDenied(StorageError, PermissionError):
    """The credentials in use may not do this."""


class InvalidKey(StorageError, ValueError):
    """A key that no backend should store (empty segment, '..', NUL...)."""


# Statuses a cloud store answers for a request that may succeed later.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def error_for_status(
    status: int,
    message: str,
    *,
    operation: str,
    url: str,
    code: str = "",
) -> StorageError:
    """Classify an HTTP error answer from GCS or S3.

    ``code`` is S3's error code: a 409 ConditionalRequestConflict means a
    concurrent conditional write was in progress and is worth retrying.
    """
    kind: type[StorageError]
    if status in TRANSIENT_STATUSES or code in ("ConditionalRequestConflict", "SlowDown"):
        kind = TransientError
    elif status == 404:
        kind = NotFound
    elif status == 412:
        kind = AlreadyExists if operation == "create" else PreconditionFailed
    elif status in (401, 403):
        kind = PermissionDenied
    else:
        kind = StorageError
    text = f"{code}: {message}" if code and code not in message else message
    return kind(text or "request failed", operation=operation, url=url, status=status)
