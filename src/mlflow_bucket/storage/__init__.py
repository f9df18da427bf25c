"""Object stores: one small interface over GCS, S3, a local folder and memory."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ..redact import install_log_redaction
from .base import ListPage, ObjectInfo, ObjectStore
from .errors import (
    AlreadyExists,
    InvalidKey,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorageError,
    TransientError,
)
from .retry import RetryPolicy

__all__ = [
    "AlreadyExists",
    "InvalidKey",
    "ListPage",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "PermissionDenied",
    "PreconditionFailed",
    "RetryPolicy",
    "StorageError",
    "TransientError",
    "open_store",
    "split_uri",
]

# How MLflow URIs name a local folder in this format: plain paths and file://
# stay MLflow's own FileStore, so installing this package changes nothing
# for an existing ./mlruns.
LOCAL_SCHEME = "bucket+file"


SCHEMES = ("gs", "gcs", "s3", "file", "memory", LOCAL_SCHEME)


def split_uri(uri: str) -> tuple[str, str, str]:
    """``scheme://bucket/root`` -> (scheme, bucket, root); a bare path is file."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file", LOCAL_SCHEME) or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):
        path = unquote(parts.path) if scheme in ("file", LOCAL_SCHEME) else uri
        return "file", "", path
    if scheme not in SCHEMES:
        raise ValueError(
            f"unsupported store URI {uri!r}: expected one of "
            "gs://bucket/prefix, s3://bucket/prefix, memory://name/prefix or a local path"
        )
    if not parts.netloc:
        raise ValueError(f"store URI {uri!r} names no bucket")
    return ("gs" if scheme == "gcs" else scheme), parts.netloc, parts.path.strip("/")


def open_store(uri: str, **options: Any) -> ObjectStore:
    """Open the object store a URI names.

    ``options`` go to the backend: for gs:// and s3:// they are the
    storage options gcsfs and s3fs take (endpoint_url, token, key, ...);
    credentials otherwise come from the clouds' usual places.

    Opening a store installs the log redaction (``mlflow_bucket.redact``):
    from then on, records of the SDKs' and HTTP clients' loggers (botocore's
    DEBUG dumps of request headers among them) carry no credential.
    """
    install_log_redaction()
    scheme, bucket, root = split_uri(uri)
    retry = options.pop("retry", None)
    concurrency = options.pop("concurrency", None)
    common: dict[str, Any] = {"retry": retry}
    if concurrency:
        common["concurrency"] = concurrency
    if scheme == "file":
        from .local import LocalStore

        return LocalStore(root, **common)
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(bucket, root, **common)
    if scheme == "gs":
        from .gcs import GcsStore

        return GcsStore(bucket, root, storage_options=options, **common)
    from .s3 import S3Store

    return S3Store(bucket, root, storage_options=options, **common)
