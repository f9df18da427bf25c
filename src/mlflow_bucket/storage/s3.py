"""Amazon S3 (and S3-compatible stores) through s3fs's aiobotocore client.

s3fs supplies the session: credentials from the AWS profile, environment
or instance role, the endpoint (``AWS_ENDPOINT_URL`` is read by botocore
itself), region and its event loop. Calls go to the client directly, not
through ``S3FileSystem._call_s3``, which retries on its own; botocore's
retries are switched off too (``total_max_attempts=1``), so the engine's
retry policy is the only one (docs/storage.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from fsspec.asyn import sync
from s3fs import S3FileSystem

from .base import ListPage, ObjectInfo, ObjectStore
from .errors import StorageError, TransientError, error_for_status


class S3Store(ObjectStore):
    scheme = "s3"

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
        config = dict(options.pop("config_kwargs", None) or {})
        config.setdefault("retries", {"total_max_attempts": 1})
        config.setdefault("connect_timeout", 15)
        config.setdefault("read_timeout", 60)
        # Enough pooled connections for the engine's parallel gets and puts.
        config.setdefault("max_pool_connections", max(self.concurrency, 10))
        options.setdefault("skip_instance_cache", True)
        self.fs = S3FileSystem(config_kwargs=config, **options)

    # -- client plumbing ----------------------------------------------------

    async def _invoke(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.fs.set_session()
        client = await self.fs.get_s3(self.bucket)
        response: dict[str, Any] = await getattr(client, method)(**params)
        body = response.get("Body")
        if body is not None:
            async with body as stream:
                response["Body"] = await stream.read()
        return response

    def _call(self, operation: str, key: str, method: str, **params: Any) -> dict[str, Any]:
        url = self.url(key)
        try:
            return sync(self.fs.loop, self._invoke, method, {"Bucket": self.bucket, **params})
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = str(err.get("Code", ""))
            if not status and code.isdigit():
                status = int(code)
            raise error_for_status(
                status,
                str(err.get("Message") or code),
                operation=operation,
                url=url,
                code="" if code.isdigit() else code,
            ) from exc
        except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            # Connection refused/reset, timeouts, truncated bodies: all worth retrying.
            raise TransientError(
                f"{type(exc).__name__}: {exc}", operation=operation, url=url
            ) from exc

    def _info(
        self,
        key: str,
        size: int,
        etag: str,
        modified: datetime | None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=size,
            version=etag.strip('"'),
            updated=modified,
            metadata=dict(metadata or {}),
        )

    # -- primitives ---------------------------------------------------------

    def _write(
        self, key: str, data: bytes, metadata: Mapping[str, str], operation: str
    ) -> ObjectInfo:
        params: dict[str, Any] = {"Key": self._full(key), "Body": data, "Metadata": dict(metadata)}
        if operation == "create":
            # The one coordination primitive: fails with 412 if the key exists.
            params["IfNoneMatch"] = "*"
        out = self._call(operation, key, "put_object", **params)
        modified = out.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        return self._info(
            key,
            len(data),
            str(out.get("ETag", "")),
            parsedate_to_datetime(modified) if modified else None,
            metadata,
        )

    def _put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        return self._write(key, data, metadata, "put")

    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        return self._write(key, data, metadata, "create")

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        params: dict[str, Any] = {"Key": self._full(key)}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            out = self._call("get", key, "get_object", **params)
        except StorageError as exc:
            if exc.status == 416:  # range past the end: empty, like a slice
                return b""
            raise
        return bytes(out["Body"])

    def _head(self, key: str) -> ObjectInfo:
        out = self._call("head", key, "head_object", Key=self._full(key))
        return self._info(
            key,
            int(out.get("ContentLength", 0)),
            str(out.get("ETag", "")),
            out.get("LastModified"),
            out.get("Metadata"),
        )

    def _list_page(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        max_results: int,
        token: str | None,
    ) -> ListPage:
        full_prefix = self._full(prefix) if prefix else (f"{self.root}/" if self.root else "")
        params: dict[str, Any] = {"Prefix": full_prefix, "MaxKeys": max_results}
        if delimiter:
            params["Delimiter"] = delimiter
        if start_after:
            params["StartAfter"] = self._full(start_after)
        if token:
            params["ContinuationToken"] = token
        out = self._call("list", prefix, "list_objects_v2", **params)
        objects = [
            self._info(
                self._relative(item["Key"]),
                int(item.get("Size", 0)),
                str(item.get("ETag", "")),
                item.get("LastModified"),
            )
            for item in out.get("Contents", [])
        ]
        prefixes = [self._relative(p["Prefix"]) for p in out.get("CommonPrefixes", [])]
        more = out.get("IsTruncated") and out.get("NextContinuationToken")
        return ListPage(objects, prefixes, str(more) if more else None)

    def _delete(self, key: str) -> None:
        self._call("delete", key, "delete_object", Key=self._full(key))

    def _server_time(self) -> datetime:
        out = self._call("time", "", "head_bucket")
        date = out.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if not date:
            raise StorageError("no Date header", operation="time", url=self.uri)
        return parsedate_to_datetime(date)
