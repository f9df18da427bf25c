"""Google Cloud Storage through gcsfs's authenticated session.

gcsfs supplies credentials (Application Default Credentials, a token
file, or anonymous against ``STORAGE_EMULATOR_HOST``), the endpoint and an
aiohttp session. Requests are made on that session directly, not through
``GCSFileSystem._call``, because ``_call`` retries up to six times with
backoff of its own; one attempt each here lets the engine's retry policy be
the only one (docs/storage.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from fsspec.asyn import sync
from gcsfs.core import GCSFileSystem  # the plain class: no gRPC bucket probe

from .base import ListPage, ObjectInfo, ObjectStore
from .errors import StorageError, TransientError, error_for_status

# Bound every attempt: a hung connection becomes a retryable timeout.
TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=15, sock_read=60)

_Response = tuple[int, Mapping[str, str], bytes]


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class GcsStore(ObjectStore):
    scheme = "gs"

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

    # -- HTTP plumbing ----------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
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
        boundary = f"mlflow-bucket-{uuid.uuid4().hex}"
        resource = {"name": self._full(key), "metadata": dict(metadata)}
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                json.dumps(resource).encode(),
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
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
        return self._info(json.loads(out))

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
        url = f"{self.fs._location}/storage/v1/b/{quote(self.bucket, safe='')}"
        _, headers, _ = self._call("time", "", "GET", url)
        if "Date" not in headers:
            raise StorageError("no Date header", operation="time", url=self.uri)
        return parsedate_to_datetime(headers["Date"])


def _error_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        err = json.loads(text)["error"]
        return str(err.get("message", text)) if isinstance(err, dict) else str(err)
    except (ValueError, KeyError, TypeError):
        return text[:500]
