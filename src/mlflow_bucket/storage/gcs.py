"""Google Cloud Storage through gcsfs's authenticated session.

gcsfs supplies credentials (Application Default Credentials, a token
file, or anonymous against ``STORAGE_EMULATOR_HOST``), the endpoint and an
aiohttp session. Requests are made on that session directly, not through
``GCSFileSystem._call``, because ``_call`` retries up to six times with
backoff of its own; one attempt each here lets the engine's retry policy be
the only one (docs/storage.md).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import aiohttp.payload
from aiohttp.abc import AbstractStreamWriter
from fsspec.asyn import sync
from gcsfs.core import GCSFileSystem  # the plain class: no gRPC bucket probe

from .base import PART_SIZE_KEY, TMP_PREFIX, BlobInfo, ListPage, ObjectInfo, ObjectStore
from .checksums import crc32c_b64, crc32c_from_b64
from .endpoints import gcs_endpoint
from .errors import NotFound, StorageError, TransientError, error_for_status

log = logging.getLogger(__name__)

# A compose request takes at most 32 sources, and a composite object at
# most 1024 components in all (intermediate composites count theirs).
COMPOSE_MAX_SOURCES = 32
MAX_COMPONENTS = 1024

# The slices a request body is sent in (see ``_Pieces``).
_SEND_SLICE = 256 * 1024

# Bound every attempt: a hung connection becomes a retryable timeout.
TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=15, sock_read=60)

_Response = tuple[int, Mapping[str, str], bytes]


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class GcsStore(ObjectStore):
    scheme = "gs"
    verify_kind = "crc32c"
    # Parallel composite uploads: parts are objects composed into the file.
    max_parts = MAX_COMPONENTS

    def __init__(
        self,
        bucket: str,
        root: str = "",
        *,
        storage_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(bucket, root, **kwargs)
        options = dict(storage_options or {})
        # gcsfs caches instances by arguments; a store owns its own session.
        options.setdefault("skip_instance_cache", True)
        self.fs = GCSFileSystem(**options)

    @property
    def endpoint(self) -> str | None:
        return gcs_endpoint(self.fs._location)  # where _object_url sends requests

    # -- HTTP plumbing ----------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | aiohttp.payload.Payload | None = None,
    ) -> _Response:
        await self.fs._set_session()
        try:
            async with self.fs.session.request(
                method,
                url,
                params=dict(params or {}),
                headers=self.fs._get_headers(dict(headers or {})),
                data=data,
                timeout=TIMEOUT,
            ) as r:
                body = await r.read()
                return r.status, r.headers, body
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}", operation=method, url=url) from exc

    def _call(
        self,
        operation: str,
        key: str,
        method: str,
        url: str,
        ok: tuple[int, ...] = (200,),
        **kw: Any,
    ) -> _Response:
        try:
            status, headers, body = sync(self.fs.loop, self._send, method, url, **kw)
        except TransientError as exc:
            raise TransientError(exc.message, operation=operation, url=self.url(key)) from exc
        if status not in ok:
            raise error_for_status(
                status, _error_message(body), operation=operation, url=self.url(key)
            )
        return status, headers, body

    def _object_url(self, key: str, *, download: bool = False) -> str:
        api = "download/storage/v1" if download else "storage/v1"
        name = quote(self._full(key), safe="")
        return f"{self.fs._location}/{api}/b/{quote(self.bucket, safe='')}/o/{name}"

    def _info(self, resource: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=self._relative(resource["name"]),
            size=int(resource.get("size", 0)),
            version=str(resource.get("generation", "")),
            updated=_parse_time(resource.get("updated")),
            metadata=dict(resource.get("metadata") or {}),
        )

    # -- primitives ---------------------------------------------------------

    def _upload(
        self, key: str, data: bytes, metadata: Mapping[str, str], operation: str
    ) -> ObjectInfo:
        resource = {"name": self._full(key), "metadata": dict(metadata)}
        return self._info(self._multipart_post(key, resource, data, operation))

    def _multipart_post(
        self, key: str, resource: Mapping[str, Any], data: bytes, operation: str
    ) -> dict[str, Any]:
        """One-request upload of metadata and media; returns the object resource."""
        boundary = f"mlflow-bucket-{uuid.uuid4().hex}"
        # One type, declared twice: the media part's Content-Type is the resource's
        # contentType. Two different ones lose the type somewhere: fake-gcs-server keeps the
        # media part's, Google's testbench and our emulator refuse the request with 412
        # (docs/storage.md, "Content types").
        media_type = str(resource.get("contentType") or "application/octet-stream")
        head = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                json.dumps(resource).encode(),
                f"\r\n--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode(),
            ]
        )
        # The media itself is not copied into one body with the rest: a part
        # would take twice its size in memory (thrice in the socket's buffer).
        body = _Pieces(head, data, f"\r\n--{boundary}--\r\n".encode())
        params = {"uploadType": "multipart"}
        if operation == "create":
            # The one coordination primitive: succeeds only if no live object.
            params["ifGenerationMatch"] = "0"
        url = f"{self.fs._location}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
        _, _, out = self._call(
            operation,
            key,
            "POST",
            url,
            params=params,
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            data=body,
        )
        doc: dict[str, Any] = json.loads(out)
        return doc

    def _put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        return self._upload(key, data, metadata, "put")

    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        return self._upload(key, data, metadata, "create")

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        headers = {}
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={start}-{last}"
        status, _, body = self._call(
            "get",
            key,
            "GET",
            self._object_url(key, download=True),
            ok=(200, 206, 416),
            params={"alt": "media"},
            headers=headers,
        )
        return b"" if status == 416 else body

    def _head(self, key: str) -> ObjectInfo:
        _, _, body = self._call("head", key, "GET", self._object_url(key))
        return self._info(json.loads(body))

    def _list_page(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        max_results: int,
        token: str | None,
    ) -> ListPage:
        full_prefix = self._full(prefix) if prefix else (f"{self.root}/" if self.root else "")
        params = {"prefix": full_prefix, "maxResults": str(max_results)}
        if delimiter:
            params["delimiter"] = delimiter
        after = self._full(start_after) if start_after else None
        if after:
            # startOffset is inclusive; S3's StartAfter and this API are not.
            params["startOffset"] = after
        if token:
            params["pageToken"] = token
        url = f"{self.fs._location}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        _, _, body = self._call("list", prefix, "GET", url, params=params)
        doc = json.loads(body)
        objects = [self._info(item) for item in doc.get("items", []) if item["name"] != after]
        prefixes = [self._relative(p) for p in doc.get("prefixes", []) if p != after]
        return ListPage(objects, prefixes, doc.get("nextPageToken"))

    def _delete(self, key: str) -> None:
        self._call("delete", key, "DELETE", self._object_url(key), ok=(200, 204, 404))

    def _server_time(self) -> datetime:
        # A one-key listing of the store's own prefix: what a reader may do.
        url = f"{self.fs._location}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        params = {"prefix": f"{self.root}/" if self.root else "", "maxResults": "1"}
        _, headers, _ = self._call("time", "", "GET", url, params=params)
        if "Date" not in headers:
            raise StorageError("no Date header", operation="time", url=self.uri)
        return parsedate_to_datetime(headers["Date"])

    # -- verified, chunked transfers (storage/transfer.py) --------------------

    def _blob(self, resource: Mapping[str, Any]) -> BlobInfo:
        crc = resource.get("crc32c")
        md5 = resource.get("md5Hash")  # composite objects have none
        metadata = dict(resource.get("metadata") or {})
        part_size = metadata.get(PART_SIZE_KEY, "")
        return BlobInfo(
            key=self._relative(resource["name"]),
            size=int(resource.get("size", 0)),
            version=str(resource.get("generation", "")),
            crc32c=crc32c_from_b64(crc) if crc else None,
            md5=base64.b64decode(md5) if md5 else None,
            part_size=int(part_size) if part_size.isdigit() else None,
            metadata=metadata,
        )

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
        resource: dict[str, Any] = {"name": self._full(key), "metadata": dict(metadata)}
        # GCS rejects the upload (400) if the bytes it got do not match these.
        if crc32c is not None:
            resource["crc32c"] = crc32c_b64(crc32c)
        if md5 is not None:
            resource["md5Hash"] = base64.b64encode(md5).decode()
        if content_type:
            resource["contentType"] = content_type
        return self._blob(self._multipart_post(key, resource, data, "put"))

    def _get_blob(
        self, key: str, start: int, end: int | None, version: str | None
    ) -> tuple[bytes, BlobInfo | None]:
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        params = {"alt": "media"}
        if version:
            # A concurrent overwrite must fail the read, not splice two versions.
            params["ifGenerationMatch"] = version
        status, answer, body = self._call(
            "get",
            key,
            "GET",
            self._object_url(key, download=True),
            ok=(200, 206, 416),
            params=params,
            headers=headers,
        )
        if status == 416:
            return b"", None
        sent = None
        if status == 200:
            crc: int | None = None
            md5: bytes | None = None
            for part in answer.get("x-goog-hash", "").split(","):
                label, _, value = part.strip().partition("=")
                if label == "crc32c" and value:
                    crc = crc32c_from_b64(value)
                elif label == "md5" and value:
                    md5 = base64.b64decode(value)
            generation = answer.get("x-goog-generation", "")
            sent = BlobInfo(key, len(body), generation, crc32c=crc, md5=md5)
        return body, sent

    def _read_into(
        self, key: str, start: int, end: int, version: str | None, sink: Callable[[bytes], None]
    ) -> None:
        """Bytes [start, end) of ``key`` (one attempt), only if still at
        ``version``, handed to ``sink`` piece by piece as they arrive, in
        order, in the event-loop thread (storage/transfer.py writes them to
        the file there). An exception from ``sink`` ends the read and is
        raised as is; a failure of the request or of the body is transient,
        and the pieces the sink got before it stay good."""
        params = {"alt": "media"}
        if version:
            params["ifGenerationMatch"] = version
        headers = {"Range": f"bytes={start}-{end - 1}"}
        url = self._object_url(key, download=True)
        try:
            status, body, failure = sync(self.fs.loop, self._stream, url, params, headers, sink)
        except TransientError as exc:
            raise TransientError(exc.message, operation="get", url=self.url(key)) from exc
        if failure is not None:
            raise failure
        if status not in (200, 206):
            raise error_for_status(status, _error_message(body), operation="get", url=self.url(key))

    async def _stream(
        self,
        url: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        sink: Callable[[bytes], None],
    ) -> tuple[int, bytes, Exception | None]:
        await self.fs._set_session()
        try:
            async with self.fs.session.get(
                url,
                params=dict(params),
                headers=self.fs._get_headers(dict(headers)),
                timeout=TIMEOUT,
            ) as r:
                if r.status not in (200, 206):
                    return r.status, await r.read(), None
                # The body's pieces as aiohttp received them: no joining.
                while True:
                    data, boundary = await r.content.readchunk()
                    if not data:
                        if boundary:  # the end of an HTTP chunk, not of the body
                            continue
                        return r.status, b"", None
                    try:
                        sink(data)
                    except Exception as exc:  # the sink's own error: not the network's
                        return r.status, b"", exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}", operation="GET", url=url) from exc

    def _stat_blob(self, key: str) -> BlobInfo:
        _, _, body = self._call("head", key, "GET", self._object_url(key))
        return self._blob(json.loads(body))

    def _part_key(self, upload_id: str, name: str) -> str:
        return f"{TMP_PREFIX}/uploads/{upload_id}/{name}"

    def mpu_start(self, key: str, *, content_type: str | None, metadata: Mapping[str, str]) -> str:
        # Nothing to create: the parts are plain objects under a fresh prefix.
        return uuid.uuid4().hex

    def mpu_put_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, crc32c: int, md5: bytes
    ) -> str:
        part = self._part_key(upload_id, f"{number:05d}")
        info = self.retry.call(
            lambda: self._put_blob(
                part, data, crc32c=crc32c, md5=None, content_type=None, metadata={}
            ),
            f"upload part {number} of {self.url(key)}",
        )
        return info.version

    def _compose(
        self,
        key: str,
        sources: list[tuple[str, str]],
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> BlobInfo:
        destination: dict[str, Any] = {"metadata": dict(metadata)}
        if content_type:
            destination["contentType"] = content_type
        doc = {
            # Pinned generations: exactly the parts this upload wrote.
            "sourceObjects": [
                {"name": self._full(name), "generation": generation} for name, generation in sources
            ],
            "destination": destination,
        }
        _, _, body = self._call(
            "compose",
            key,
            "POST",
            self._object_url(key) + "/compose",
            headers={"Content-Type": "application/json"},
            data=json.dumps(doc).encode(),
        )
        return self._blob(json.loads(body))

    def _start_session(self, key: str) -> str:
        """A resumable upload session for ``key``: its URL takes the bytes
        in one PUT and needs no credentials (the session id is the grant)."""
        url = f"{self.fs._location}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
        _, headers, _ = self._call(
            "put",
            key,
            "POST",
            url,
            params={"uploadType": "resumable", "name": self._full(key)},
            headers={"Content-Type": "application/json"},
            data=json.dumps({"name": self._full(key)}).encode(),
        )
        location = headers.get("Location")
        if not location:
            raise StorageError("no session URL in the answer", operation="put", url=self.url(key))
        return str(location)

    def mpu_presign(
        self, key: str, parts: int, *, content_type: str | None, expires: int = 3600
    ) -> tuple[str, list[str]]:
        # GCS has no presigned parts without a service-account key to sign
        # with; a resumable session per part object is the same grant.
        upload_id = uuid.uuid4().hex
        names = [self._part_key(upload_id, f"{n:05d}") for n in range(1, parts + 1)]
        urls = list(
            self._executor().map(
                lambda name: self.retry.call(
                    lambda: self._start_session(name), f"start upload of {self.url(name)}"
                ),
                names,
            )
        )
        return upload_id, urls

    def mpu_complete(
        self,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> BlobInfo:
        if not all(token.isdigit() for _, token in parts):
            # Parts sent through session URLs: their answers' ETags are not
            # generations; the listing of the upload's prefix has them.
            listed = {
                obj.key: obj.version for obj in self.list_objects(self._part_key(upload_id, ""))
            }
            resolved = []
            for number, _ in parts:
                name = self._part_key(upload_id, f"{number:05d}")
                if name not in listed:
                    raise NotFound(
                        f"part {number} was never uploaded", operation="compose", url=self.url(key)
                    )
                resolved.append((number, listed[name]))
            parts = resolved
        sources = [(self._part_key(upload_id, f"{n:05d}"), gen) for n, gen in sorted(parts)]
        level = 0
        while len(sources) > COMPOSE_MAX_SOURCES:
            # A tree: compose groups of 32 into intermediates, then those.
            groups = [
                (self._part_key(upload_id, f"c{level}-{i:04d}"), sources[start : start + 32])
                for i, start in enumerate(range(0, len(sources), COMPOSE_MAX_SOURCES))
            ]

            def merge(item: tuple[str, list[tuple[str, str]]]) -> tuple[str, str]:
                name, group = item
                info = self.retry.call(
                    lambda: self._compose(name, group, None, {}), f"compose {self.url(name)}"
                )
                return name, info.version

            sources = list(self._executor().map(merge, groups))
            level += 1
        info = self.retry.call(
            lambda: self._compose(key, sources, content_type, metadata),
            f"compose {self.url(key)}",
        )
        self._drop_parts(upload_id)
        return info

    def mpu_abort(self, key: str, upload_id: str) -> None:
        self._drop_parts(upload_id)

    def _drop_parts(self, upload_id: str) -> None:
        prefix = self._part_key(upload_id, "")
        try:
            self.delete_many([obj.key for obj in self.list_objects(prefix)])
        except StorageError as exc:
            # The file is complete (or the upload failed anyway); leftovers
            # are only storage, which the documented lifecycle rule reclaims.
            log.warning("could not delete temporary parts under %s: %s", self.url(prefix), exc)


class _Pieces(aiohttp.payload.Payload):
    """A request body sent from its pieces as they are, in slices of
    ``_SEND_SLICE`` bytes, each written once the socket has taken most of the
    one before: the socket's buffer holds at most about a slice (a whole
    ``bytes`` body lands in it at once, a copy of the whole). Rewritable, so
    a request aiohttp sends again sends all of it again."""

    def __init__(self, *pieces: bytes) -> None:
        super().__init__(pieces, content_type=None)
        self._pieces = pieces
        self._size = sum(len(p) for p in pieces)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._pieces).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for piece in self._pieces:
            view = memoryview(piece)
            for start in range(0, len(view), _SEND_SLICE):
                # StreamWriter.write waits for the socket to drain past 64 KiB.
                await writer.write(view[start : start + _SEND_SLICE])

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self.write(writer)


def _error_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        err = json.loads(text)["error"]
        return str(err.get("message", text)) if isinstance(err, dict) else str(err)
    except (ValueError, KeyError, TypeError):
        return text[:500]
