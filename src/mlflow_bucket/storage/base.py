"""The object-store interface every backend implements.

A store is bound to one bucket and a root prefix inside it; keys are
relative to that root and use "/" as separator. Backends implement the
single-attempt primitives (the ``_``-prefixed methods) and classify their
failures; this class adds key validation, the retry policy, create-if-absent
that recognises its own earlier attempt, pagination and bounded
parallelism, the same on every backend.
"""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import AlreadyExists, InvalidKey, NotFound, TransientError
from .retry import RetryPolicy

# Stored with every create-if-absent so that a retry whose first attempt
# succeeded unseen can recognise the object as its own.
WRITER_TOKEN = "mlflow-bucket-writer"

DEFAULT_CONCURRENCY = 32
MAX_PAGE = 1000


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD or a listing says about one object."""

    key: str
    size: int
    # GCS generation, S3 ETag, local inode+mtime, memory counter: changes on
    # every write of the key, so it can serve as a precondition.
    version: str
    updated: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BlobInfo:
    """What a verified transfer needs to know about one object.

    Checksums are the store's own, as it reports them: ``crc32c`` on GCS
    (composite objects included), ``md5`` where it is the content's MD5 (a
    GCS ``md5Hash``, an S3 ETag of a single-part upload without KMS), the
    raw ``etag`` on S3 (``<md5 of part md5s>-N`` for multipart uploads).
    """

    key: str
    size: int
    version: str
    crc32c: int | None = None
    md5: bytes | None = None
    etag: str | None = None
    # The part size of a multipart upload, when the uploader recorded it
    # (ours do, in metadata): lets a download re-derive an S3 multipart ETag.
    part_size: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


# Metadata key under which multipart uploads record their part size.
PART_SIZE_KEY = "mlflow-bucket-part-size"

# Where multipart uploads keep their temporary objects (GCS composite parts),
# relative to the store's root. Listings of artifacts skip it; a bucket
# lifecycle rule on this prefix removes parts a crashed process left behind.
TMP_PREFIX = ".mlflow-bucket-tmp"


@dataclass(frozen=True)
class ListPage:
    """One page of a listing, in lexicographic key order."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    next_token: str | None


def validate_key(key: str, *, allow_empty: bool = False) -> str:
    """Refuse keys that would mean different things on different backends."""
    if not key:
        if allow_empty:
            return key
        raise InvalidKey("empty object key")
    if "\x00" in key:
        raise InvalidKey(f"object key contains NUL: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"object key must be relative: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix is a key prefix; it may end with '/' or be empty."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class ObjectStore(ABC):
    """One bucket and root prefix; keys are relative to the root."""

    scheme: str = ""

    def __init__(
        self,
        bucket: str,
        root: str = "",
        *,
        retry: RetryPolicy | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.bucket = bucket
        self.root = root.strip("/")
        if self.root:
            validate_key(self.root)
        self.retry = retry or RetryPolicy.from_env()
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- naming ---------------------------------------------------------

    @property
    def uri(self) -> str:
        base = f"{self.scheme}://{self.bucket}"
        return f"{base}/{self.root}" if self.root else base

    @property
    def endpoint(self) -> str | None:
        """The service this store's requests go to (a URL), when it is not the
        scheme's default one; None for the default (Google Cloud Storage, AWS
        S3) and for stores without one (a local folder, whose URI holds its
        absolute path; a memory bucket). See storage/endpoints.py."""
        return None

    @property
    def identity(self) -> str:
        """What tells this store apart from every other: the URI, plus the
        endpoint unless it is the scheme's default (``s3://twin/team at
        http://minio:9000``). Two stores with one identity hold the same
        objects; local state about a store (spool, cache) is keyed by it."""
        endpoint = self.endpoint
        return self.uri if endpoint is None else f"{self.uri} at {endpoint}"

    def url(self, key: str) -> str:
        return f"{self.uri}/{key}" if key else self.uri

    def _full(self, key: str) -> str:
        """The bucket-level object name of a root-relative key."""
        return f"{self.root}/{key}" if self.root else key

    def _relative(self, name: str) -> str:
        return name[len(self.root) + 1 :] if self.root else name

    # -- backend primitives: one attempt each ---------------------------

    @abstractmethod
    def _put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        """Write ``key`` unconditionally; readers see all of it or none."""

    @abstractmethod
    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        """Write ``key`` only if absent, atomically; else raise AlreadyExists."""

    @abstractmethod
    def _get(self, key: str, start: int, end: int | None) -> bytes:
        """Bytes [start, end) of ``key`` (to the end when ``end`` is None)."""

    @abstractmethod
    def _head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _list_page(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        max_results: int,
        token: str | None,
    ) -> ListPage:
        """Keys under ``prefix`` strictly after ``start_after``, sorted."""

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    # -- streaming transfers (storage/transfer.py drives these) -------------
    #
    # Defaults work on any backend through the primitives above; the cloud
    # backends override them to send checksums the server verifies and to
    # report the checksums it stored.

    # How a transfer is verified end to end: "crc32c", "md5" or "size".
    verify_kind: str = "size"
    # Largest number of parts of one multipart upload; 0: no multipart.
    max_parts: int = 0

    def _put_blob(
        self,
        key: str,
        data: bytes,
        *,
        crc32c: int | None,
        md5: bytes | None,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> BlobInfo:
        """Write ``key`` (one attempt), declaring checksums the server checks."""
        info = self._put(key, data, metadata)
        return BlobInfo(key, info.size, info.version, metadata=info.metadata)

    def _get_blob(
        self, key: str, start: int, end: int | None, version: str | None
    ) -> tuple[bytes, BlobInfo | None]:
        """Bytes [start, end) of ``key`` (one attempt), only if still at ``version``.

        The second item carries the checksums the store sent along with a
        whole-object read, when it sends any.
        """
        return self._get(key, start, end), None

    def _stat_blob(self, key: str) -> BlobInfo:
        info = self._head(key)
        return BlobInfo(key, info.size, info.version, metadata=info.metadata)

    def mpu_start(self, key: str, *, content_type: str | None, metadata: Mapping[str, str]) -> str:
        """Begin a multipart upload of ``key``; returns its upload id."""
        raise NotImplementedError(f"{type(self).__name__} has no multipart uploads")

    def mpu_put_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, crc32c: int, md5: bytes
    ) -> str:
        """Upload part ``number`` (from 1), retried; returns the part's token."""
        raise NotImplementedError(f"{type(self).__name__} has no multipart uploads")

    def mpu_complete(
        self,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> BlobInfo:
        """Assemble the parts, in order, into ``key``; the object appears whole."""
        raise NotImplementedError(f"{type(self).__name__} has no multipart uploads")

    def mpu_abort(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload's parts (best effort, retried)."""
        raise NotImplementedError(f"{type(self).__name__} has no multipart uploads")

    def mpu_presign(
        self, key: str, parts: int, *, content_type: str | None, expires: int = 3600
    ) -> tuple[str, list[str]]:
        """Begin a multipart upload whose parts someone else sends: the upload
        id and, per part, a URL that takes the part's bytes in one PUT with
        no credentials. Finish with ``mpu_complete`` (tokens may be the
        parts' ETags as the PUTs answered them) or ``mpu_abort``."""
        raise NotImplementedError(f"{type(self).__name__} has no multipart uploads")

    def upload_file(self, key: str, path: str, **options: Any) -> BlobInfo:
        """Upload a local file, chunked, parallel and verified (storage/transfer.py)."""
        from .transfer import Transfers

        with Transfers(self, **options) as transfers:
            return transfers.upload([(path, key)])[0]

    def download_file(self, key: str, path: str, **options: Any) -> BlobInfo:
        """Download ``key`` to a local file, chunked, parallel and verified."""
        from .transfer import Transfers

        with Transfers(self, **options) as transfers:
            return transfers.download([(key, path)])[0]

    def _server_time(self) -> datetime:
        """The store's clock (the Date header of a cheap request)."""
        from datetime import UTC

        return datetime.now(UTC)

    # -- public API: validated and retried --------------------------------

    def put(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        validate_key(key)
        return self.retry.call(lambda: self._put(key, data, metadata or {}), f"put {self.url(key)}")

    def create(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Create ``key`` if it does not exist; raise AlreadyExists otherwise.

        Exactly one of any number of concurrent creators of a key succeeds.
        A create that finds the key taken checks the writer token stored
        with it: if the winner was this call's own earlier attempt (its
        answer lost to a reset or a 5xx), that is success. The check runs on
        the first attempt too, because HTTP clients re-send idempotent
        requests by themselves (aiohttp re-sends a PUT once when a
        keep-alive connection drops), unseen by the retry policy.
        """
        validate_key(key)
        token = uuid.uuid4().hex
        meta = {**(metadata or {}), WRITER_TOKEN: token}

        def attempt() -> ObjectInfo:
            try:
                return self._create(key, data, meta)
            except AlreadyExists:
                try:
                    info = self._head(key)
                except NotFound:
                    raise TransientError(
                        "object vanished right after a conflict",
                        operation="create",
                        url=self.url(key),
                    ) from None
                if info.metadata.get(WRITER_TOKEN) == token:
                    return info
                raise

        return self.retry.call(attempt, f"create {self.url(key)}")

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        validate_key(key)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range [{start}, {end}) for {self.url(key)}")
        if end is not None and end == start:
            return b""
        return self.retry.call(lambda: self._get(key, start, end), f"get {self.url(key)}")

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        return self.retry.call(lambda: self._head(key), f"head {self.url(key)}")

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def list_page(
        self,
        prefix: str = "",
        *,
        delimiter: str | None = None,
        start_after: str | None = None,
        max_results: int = MAX_PAGE,
        token: str | None = None,
    ) -> ListPage:
        """One page of keys under ``prefix``, after ``start_after`` (exclusive).

        With a delimiter, keys containing it after the prefix are rolled up
        into ``prefixes`` (each ending with the delimiter).
        """
        validate_prefix(prefix)
        if not 1 <= max_results <= MAX_PAGE:
            raise ValueError(f"max_results must be in 1..{MAX_PAGE}: {max_results}")
        return self.retry.call(
            lambda: self._list_page(prefix, delimiter, start_after, max_results, token),
            f"list {self.url(prefix)}",
        )

    def list_objects(
        self,
        prefix: str = "",
        *,
        delimiter: str | None = None,
        start_after: str | None = None,
    ) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` after ``start_after``, page by page."""
        token: str | None = None
        while True:
            page = self.list_page(prefix, delimiter=delimiter, start_after=start_after, token=token)
            yield from page.objects
            if not page.next_token:
                return
            token = page.next_token

    def list_prefixes(self, prefix: str = "", delimiter: str = "/") -> list[str]:
        """The "directories" right under ``prefix``."""
        out: list[str] = []
        token: str | None = None
        while True:
            page = self.list_page(prefix, delimiter=delimiter, token=token)
            out.extend(page.prefixes)
            if not page.next_token:
                return out
            token = page.next_token

    def delete(self, key: str) -> None:
        validate_key(key)
        self.retry.call(lambda: self._delete(key), f"delete {self.url(key)}")

    def server_time(self) -> datetime:
        return self.retry.call(self._server_time, f"time of {self.uri}")

    # -- bounded parallelism ----------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency,
                    thread_name_prefix=f"mlflow-bucket-{self.scheme}",
                )
            return self._pool

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Fetch many objects at once, at most ``concurrency`` in flight."""
        keys = list(dict.fromkeys(keys))
        if len(keys) <= 1:
            return {k: self.get(k) for k in keys}
        return dict(zip(keys, self._executor().map(self.get, keys), strict=True))

    def put_many(self, items: Mapping[str, bytes]) -> dict[str, ObjectInfo]:
        """Write many objects at once, at most ``concurrency`` in flight."""
        keys = list(items)
        if len(keys) <= 1:
            return {k: self.put(k, items[k]) for k in keys}
        infos = self._executor().map(lambda k: self.put(k, items[k]), keys)
        return dict(zip(keys, infos, strict=True))

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for _ in self._executor().map(self.delete, keys):
            pass

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
