"""Amazon S3 (and S3-compatible stores) through s3fs's aiobotocore client.

s3fs supplies the session: credentials from the AWS profile, environment
or instance role, the endpoint (``AWS_ENDPOINT_URL`` is read by botocore
itself), region and its event loop. Calls go to the client directly, not
through ``S3FileSystem._call_s3``, which retries on its own; botocore's
retries are switched off too (``total_max_attempts=1``), so the engine's
retry policy is the only one (docs/storage.md).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from fsspec.asyn import sync
from s3fs import S3FileSystem

from .base import PART_SIZE_KEY, BlobInfo, ListPage, ObjectInfo, ObjectStore
from .errors import NotFound, StorageError, TransientError, error_for_status

# S3 numbers parts 1..10000.
MAX_PARTS = 10_000


class S3Store(ObjectStore):
    scheme = "s3"
    verify_kind = "md5"
    max_parts = MAX_PARTS

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
        # A one-key listing of the store's own prefix: readers may list it,
        # while HeadBucket needs ListBucket on the whole bucket.
        out = self._call(
            "time", "", "list_objects_v2", Prefix=f"{self.root}/" if self.root else "", MaxKeys=1
        )
        date = out.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if not date:
            raise StorageError("no Date header", operation="time", url=self.uri)
        return parsedate_to_datetime(date)

    # -- verified, chunked transfers (storage/transfer.py) --------------------

    def _blob(self, key: str, out: Mapping[str, Any], size: int | None = None) -> BlobInfo:
        etag = str(out.get("ETag", "")).strip('"')
        metadata = dict(out.get("Metadata") or {})
        part_size = metadata.get(PART_SIZE_KEY, "")
        # Under SSE-KMS and SSE-C the ETag is not an MD5 of anything we sent:
        # leave it out rather than report a false mismatch.
        encrypted = str(out.get("ServerSideEncryption", "")).startswith("aws:kms") or bool(
            out.get("SSECustomerAlgorithm")
        )
        simple = not encrypted and "-" not in etag and len(etag) == 32
        return BlobInfo(
            key=key,
            size=int(out.get("ContentLength", 0)) if size is None else size,
            version=etag,
            md5=bytes.fromhex(etag) if simple else None,
            etag=None if encrypted else etag,
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
        params: dict[str, Any] = {"Key": self._full(key), "Body": data, "Metadata": dict(metadata)}
        if md5 is not None:
            # S3 rejects the upload (400 BadDigest) if the bytes do not match.
            params["ContentMD5"] = base64.b64encode(md5).decode()
        if content_type:
            params["ContentType"] = content_type
        out = self._call("put", key, "put_object", **params)
        return self._blob(key, {**out, "Metadata": metadata}, size=len(data))

    def _get_blob(
        self, key: str, start: int, end: int | None, version: str | None
    ) -> tuple[bytes, BlobInfo | None]:
        params: dict[str, Any] = {"Key": self._full(key)}
        ranged = bool(start) or end is not None
        if ranged:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if version:
            # A concurrent overwrite must fail the read, not splice two versions.
            params["IfMatch"] = f'"{version}"'
        try:
            out = self._call("get", key, "get_object", **params)
        except StorageError as exc:
            if exc.status == 416:
                return b"", None
            raise
        body = bytes(out["Body"])
        return body, None if ranged else self._blob(key, out, size=len(body))

    def _stat_blob(self, key: str) -> BlobInfo:
        return self._blob(key, self._call("head", key, "head_object", Key=self._full(key)))

    def mpu_start(self, key: str, *, content_type: str | None, metadata: Mapping[str, str]) -> str:
        params: dict[str, Any] = {"Key": self._full(key), "Metadata": dict(metadata)}
        if content_type:
            params["ContentType"] = content_type
        out = self.retry.call(
            lambda: self._call("put", key, "create_multipart_upload", **params),
            f"start upload of {self.url(key)}",
        )
        return str(out["UploadId"])

    def mpu_put_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, crc32c: int, md5: bytes
    ) -> str:
        out = self.retry.call(
            lambda: self._call(
                "put",
                key,
                "upload_part",
                Key=self._full(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(md5).decode(),
            ),
            f"upload part {number} of {self.url(key)}",
        )
        return str(out.get("ETag", "")).strip('"')

    def mpu_complete(
        self,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> BlobInfo:
        listing = [{"PartNumber": n, "ETag": f'"{etag}"'} for n, etag in sorted(parts)]
        attempts = 0

        def complete() -> None:
            nonlocal attempts
            attempts += 1
            try:
                self._call(
                    "put",
                    key,
                    "complete_multipart_upload",
                    Key=self._full(key),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": listing},
                )
            except NotFound:
                # NoSuchUpload on a retry: the first attempt completed it and
                # its answer was lost. The object's ETag, checked by the
                # caller, tells whether it is really ours.
                if attempts == 1:
                    raise

        self.retry.call(complete, f"complete upload of {self.url(key)}")
        # Read back what the store holds: size and ETag, for verification.
        return self.retry.call(lambda: self._stat_blob(key), f"head {self.url(key)}")

    def mpu_abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            self.retry.call(
                lambda: self._call(
                    "delete",
                    key,
                    "abort_multipart_upload",
                    Key=self._full(key),
                    UploadId=upload_id,
                ),
                f"abort upload of {self.url(key)}",
            )

    async def _presign(self, method: str, params: dict[str, Any], expires: int) -> str:
        await self.fs.set_session()
        client = await self.fs.get_s3(self.bucket)
        url: str = await client.generate_presigned_url(
            method, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires
        )
        return url

    def mpu_presign(
        self, key: str, parts: int, *, content_type: str | None, expires: int = 3600
    ) -> tuple[str, list[str]]:
        upload_id = self.mpu_start(key, content_type=content_type, metadata={})
        urls = [
            # Signing is local: no request per part.
            sync(
                self.fs.loop,
                self._presign,
                "upload_part",
                {"Key": self._full(key), "UploadId": upload_id, "PartNumber": number},
                expires,
            )
            for number in range(1, parts + 1)
        ]
        return upload_id, urls
