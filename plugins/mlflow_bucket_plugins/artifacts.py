"""MLflow artifact repositories for gs://, s3://, memory:// and local folders.

Registered through the ``mlflow.artifact_repository`` entry point for the
schemes ``gs``, ``s3`` and ``memory``; they replace MLflow's built-in GCS
and S3 repositories. Every transfer goes through the engine
(``mlflow_bucket.storage.transfer``): retried by the engine's one retry
policy, chunked and parallel for large files, many small files in flight
at once, verified end to end, never visible half-written.

``MLFLOW_BUCKET_ARTIFACTS=builtin`` switches gs:// and s3:// back to MLflow's
own repositories (see ``artifact_entrypoints``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.entities import FileInfo
from mlflow.entities.multipart_upload import (
    CreateMultipartUploadResponse,
    MultipartUploadCredential,
    MultipartUploadPart,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
)
from mlflow.store.artifact.artifact_repo import ArtifactRepository, MultipartUploadMixin
from mlflow.utils.file_utils import create_tmp_dir

from mlflow_bucket.log import CorruptObjectWarning
from mlflow_bucket.project import store_setup
from mlflow_bucket.storage import (
    ObjectStore,
    StorageError,
    open_store,
    split_uri,
)
from mlflow_bucket.storage.base import validate_key
from mlflow_bucket.storage.errors import InvalidKey
from mlflow_bucket.storage.transfer import TransferFailed, Transfers, guess_content_type

from . import paths
from .storage_errors import error_code

log = logging.getLogger(__name__)

# -- stores: one per bucket and process ----------------------------------------
#
# A repository is created per run (and per sub-path) all the time; the store
# underneath holds the HTTP session and its pooled connections, so it is
# shared by every repository on the same bucket.

_STORES: dict[tuple[str, str, str], ObjectStore] = {}
_STORES_LOCK = threading.Lock()
_OPTIONS: dict[str, dict[str, Any]] = {}


def set_storage_options(bucket_uri: str, **options: Any) -> None:
    """Storage options (endpoint, credentials...) for repositories on ``bucket_uri``
    (``gs://bucket`` or ``s3://bucket``), for code that cannot use the
    environment; they go to gcsfs/s3fs as ``open_store`` passes them."""
    scheme, bucket, _ = split_uri(bucket_uri)
    _OPTIONS[f"{scheme}://{bucket}"] = dict(options)


def _env_options(scheme: str) -> dict[str, Any]:
    """MLflow's own S3 settings, honoured so that switching repositories
    needs no change to the environment."""
    options: dict[str, Any] = {}
    if scheme == "s3":
        endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
        if os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() in ("1", "true", "yes"):
            options["client_kwargs"] = {"verify": False}
    return options


def _store_for(uri: str) -> tuple[ObjectStore, str]:
    """The shared store of ``uri``'s bucket, and the key prefix of ``uri`` in it."""
    try:
        scheme, bucket, root = split_uri(uri)
    except ValueError as exc:
        raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
    if scheme == "file":
        # A local folder: the store is the folder itself (temporary files
        # must live on its file system for the rename into place).
        from mlflow_bucket.storage.local import LocalStore

        return LocalStore(root), ""
    # The project's storage options (docs/configuration.md), then MLflow's own
    # variables, then options set in code.
    options = {
        **store_setup(f"{scheme}://{bucket}").storage_options,
        **_env_options(scheme),
        **_OPTIONS.get(f"{scheme}://{bucket}", {}),
    }
    ident = (scheme, bucket, json.dumps(options, sort_keys=True, default=str))
    with _STORES_LOCK:
        store = _STORES.get(ident)
        if store is None:
            store = open_store(f"{scheme}://{bucket}", **options)
            _STORES[ident] = store
    return store, paths.clean(root)


# -- errors -----------------------------------------------------------------------


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """Engine errors as MlflowException, with the error code MLflow's own
    repositories give the same failure."""
    try:
        yield
    except TransferFailed as exc:
        codes = {error_code(e) for e in exc.failures.values()}
        code = codes.pop() if len(codes) == 1 else INTERNAL_ERROR
        raise MlflowException(f"{what}: {exc}", error_code=code) from exc
    except (StorageError, OSError) as exc:
        raise MlflowException(f"{what}: {exc}", error_code=error_code(exc)) from exc


# -- foreign keys ----------------------------------------------------------------
#
# Our uploads refuse paths with '..', '.' or empty segments, but another tool
# can put such objects in the bucket ("model/../x", "model//x"). They are not
# artifacts: listings and downloads leave them out, with a warning naming each
# (once per process), and the rest of the folder reads as before.

_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()
_WARN_LIMIT = 10_000


def _foreign(store: ObjectStore, key: str) -> bool:
    """Whether ``key`` (a listed object, or a listed folder ending with '/')
    is one the engine refuses (``validate_key``); if so, warn once."""
    try:
        validate_key(key[:-1] if key.endswith("/") else key)
    except InvalidKey as exc:
        url = store.url(key)
        with _WARNED_LOCK:
            if url in _WARNED or len(_WARNED) >= _WARN_LIMIT:
                return True
            _WARNED.add(url)
        reason = f"not an artifact: {exc.message}; left out of listings and downloads"
        log.warning("skipping %s: %s", url, reason)
        warnings.warn(f"skipping {url}: {reason}", CorruptObjectWarning, stacklevel=3)
        return True
    return False


# -- the repository ---------------------------------------------------------------


class BucketArtifactRepository(ArtifactRepository):
    """Artifacts under one URI of an engine store (gs://, s3://, memory://, a folder)."""

    def __init__(
        self,
        artifact_uri: str,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
    ) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self.store, self.root = _store_for(artifact_uri)

    # -- naming

    def _key(self, rel: str) -> str:
        return paths.join(self.root, rel)

    def _rel(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key

    def _transfers(self, description: str) -> Transfers:
        return Transfers(self.store, description=description)

    # -- writing

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        rel = paths.join(paths.clean(artifact_path), paths.file_name(local_file))
        where = f"Could not log {local_file} to {self.artifact_uri}"
        with _mlflow_errors(where), self._transfers(rel) as transfers:
            transfers.upload([(os.fspath(local_file), self._key(rel))])

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        base = paths.clean(artifact_path)
        files = paths.walk_files(os.fspath(local_dir))
        if not files:
            return
        items = [(local, self._key(paths.join(base, rel))) for local, rel in files]
        where = f"Could not log {local_dir} to {self.artifact_uri}"
        label = base or os.path.basename(os.path.abspath(local_dir))
        with _mlflow_errors(where), self._transfers(label) as transfers:
            transfers.upload(items)

    # -- reading

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        rel = paths.clean(path)
        prefix = self._key(rel)
        prefix = f"{prefix}/" if prefix else ""
        infos: list[FileInfo] = []
        token: str | None = None
        with _mlflow_errors(f"Could not list {paths.join(self.artifact_uri, rel)}"):
            while True:
                page = self.store.list_page(prefix, delimiter="/", token=token)
                for obj in page.objects:
                    # Folder markers some tools write ("dir/", empty): not files.
                    if obj.key == prefix or obj.key.endswith("/"):
                        continue
                    if _foreign(self.store, obj.key):
                        continue
                    name = self._rel(obj.key)
                    if not paths.is_hidden(name):
                        infos.append(FileInfo(name, False, obj.size))
                for sub in page.prefixes:
                    # "a/../", "a/./", "a//": no phantom '..', '.' or nameless folder.
                    if _foreign(self.store, sub):
                        continue
                    name = self._rel(sub)[:-1]
                    if not paths.is_hidden(name):
                        infos.append(FileInfo(name, True, None))
                if not page.next_token:
                    break
                token = page.next_token
        return sorted(infos, key=lambda f: f.path)

    def _files_under(self, rel: str) -> list[tuple[str, int]]:
        """(key, size) of every object under folder ``rel``: one LIST per 1000.

        Objects whose keys the engine refuses are left out, with a warning:
        the rest of the folder downloads (``load_model`` works), and no
        ``..`` in a key can reach a local path.
        """
        prefix = self._key(rel)
        prefix = f"{prefix}/" if prefix else ""
        return [
            (obj.key, obj.size)
            for obj in self.store.list_objects(prefix)
            if not obj.key.endswith("/")
            and not _foreign(self.store, obj.key)
            and not paths.is_hidden(self._rel(obj.key))
        ]

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        rel = paths.clean(remote_file_path)
        where = f"Could not download {paths.join(self.artifact_uri, rel)}"
        with _mlflow_errors(where), self._transfers(rel) as transfers:
            transfers.download([(self._key(rel), os.fspath(local_path))])

    def download_artifacts(self, artifact_path: str, dst_path: str | None = None) -> str:
        """Like MLflow's, but a folder is listed flat (one request per 1000
        files, not one per sub-folder) and fetched by the engine with many
        files in flight, each in one GET that the listing's size and the
        store's checksums verify."""
        rel = paths.clean(artifact_path)
        if dst_path:
            dst_path = os.path.abspath(dst_path)
            if not os.path.exists(dst_path):
                raise MlflowException(
                    "The destination path for downloaded artifacts does not"
                    f" exist! Destination path: {dst_path}",
                    error_code=RESOURCE_DOES_NOT_EXIST,
                )
            if not os.path.isdir(dst_path):
                raise MlflowException(
                    "The destination path for downloaded artifacts must be a directory!"
                    f" Destination path: {dst_path}",
                    error_code=INVALID_PARAMETER_VALUE,
                )
        else:
            dst_path = create_tmp_dir()
        where = paths.join(self.artifact_uri, rel)
        with _mlflow_errors(f"Could not download {where}"):
            files = self._files_under(rel)
            if files:
                items = []
                sizes: list[int | None] = []
                for key, size in files:
                    local = self._create_download_destination(self._rel(key), dst_path)
                    items.append((key, local))
                    sizes.append(size)
                with self._transfers(rel or "artifacts") as transfers:
                    transfers.download(items, sizes)
            elif rel:
                local = self._create_download_destination(rel, dst_path)
                with self._transfers(rel) as transfers:
                    transfers.download([(self._key(rel), local)])
        return os.path.join(dst_path, os.path.normpath(rel)) if rel else dst_path

    # -- deleting

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        rel = paths.clean(artifact_path)
        base = self._key(rel)
        with _mlflow_errors(f"Could not delete {paths.join(self.artifact_uri, rel)}"):
            # One listing finds the file itself and everything under the folder.
            keys = [
                obj.key
                for obj in self.store.list_objects(base)
                if not base or obj.key == base or obj.key.startswith(f"{base}/")
            ]
            self.store.delete_many(keys)


class _MultipartMixin(MultipartUploadMixin):
    """``mlflow server --serve-artifacts`` with ``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD``:
    clients send parts straight to the bucket through URLs this hands out."""

    store: ObjectStore
    _key: Callable[[str], str]

    def _mpu_key(self, local_file: str, artifact_path: str | None) -> str:
        return self._key(paths.join(paths.clean(artifact_path), paths.file_name(local_file)))

    def create_multipart_upload(
        self, local_file: str, num_parts: int = 1, artifact_path: str | None = None
    ) -> CreateMultipartUploadResponse:
        key = self._mpu_key(local_file, artifact_path)
        with _mlflow_errors(f"Could not start a multipart upload of {local_file}"):
            upload_id, urls = self.store.mpu_presign(
                key, num_parts, content_type=guess_content_type(local_file)
            )
        return CreateMultipartUploadResponse(
            credentials=[
                MultipartUploadCredential(url=url, part_number=i + 1, headers={})
                for i, url in enumerate(urls)
            ],
            upload_id=upload_id,
        )

    def complete_multipart_upload(
        self,
        local_file: str,
        upload_id: str,
        parts: list[MultipartUploadPart],
        artifact_path: str | None = None,
    ) -> None:
        key = self._mpu_key(local_file, artifact_path)
        tokens = [(part.part_number, (part.etag or "").strip('"')) for part in parts]
        with _mlflow_errors(f"Could not complete the multipart upload of {local_file}"):
            self.store.mpu_complete(
                key,
                upload_id,
                tokens,
                content_type=guess_content_type(local_file),
                metadata={},
            )

    def abort_multipart_upload(
        self, local_file: str, upload_id: str, artifact_path: str | None = None
    ) -> None:
        key = self._mpu_key(local_file, artifact_path)
        with _mlflow_errors(f"Could not abort the multipart upload of {local_file}"):
            self.store.mpu_abort(key, upload_id)


class CloudArtifactRepository(_MultipartMixin, BucketArtifactRepository):
    """gs:// and s3://: also the multipart paths of a proxying MLflow server."""
