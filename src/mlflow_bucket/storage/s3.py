"""Amazon S3 (and S3-compatible stores) through s3fs's aiobotocore client.

s3fs supplies the session: credentials from the AWS profile, environment
or instance role, the endpoint (``AWS_ENDPOINT_URL`` is read by botocore
itself), region and its event loop. Calls go to the client directly, not
through ``S3FileSystem._call_s3``, which retries on its own; botocore's
retries are switched off too (``total_max_attempts=1``), so the engine's
retry policy is the only one (docs/storage.md).

Multipart uploads declare ``ChecksumAlgorithm=CRC32``: every part carries a
CRC32 (computed in the caller's thread) that S3 checks against the bytes,
and the finished object's COMPOSITE CRC32 is compared with the parts'. Such
a part goes with ``UNSIGNED-PAYLOAD``, as botocore already sends checksummed
uploads on https: otherwise botocore would SHA-256 every part for the
signature (always on plain-http endpoints, and on https whenever the
checksum is not one it computed), in s3fs's one event-loop thread.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from fsspec.asyn import sync
from s3fs import S3FileSystem

from .base import PART_SIZE_KEY, BlobInfo, ListPage, ObjectInfo, ObjectStore
from .checksums import composite_matches, crc32, crc32_b64, crc32_composite
from .endpoints import s3_endpoint
from .errors import NotFound, PermissionDenied, StorageError, TransientError, error_for_status

# S3 numbers parts 1..10000.
MAX_PARTS = 10_000
# Separates a part's ETag from its CRC32 in the token mpu_put_part returns
# (neither an ETag nor base64 contains it).
_TOKEN_SEP = "|"
_CHECKSUM_HEADER = "x-amz-checksum-crc32"
# Read size of a streamed body when the HTTP client is not aiohttp.
_STREAM_PIECE = 1 << 18

T = TypeVar("T")


@dataclass(frozen=True)
class S3BlobInfo(BlobInfo):
    """``BlobInfo`` and the object's CRC32 checksum, when it has one and the
    answer carries it (``ChecksumMode=ENABLED``): COMPOSITE for a multipart
    upload whose parts carried CRC32s (``<base64>-N``; moto leaves out the
    ``-N``), FULL_OBJECT otherwise. A download whose ranges match the parts
    checks it with a CRC32 per part instead of an MD5 (storage/transfer.py)."""

    crc32: str | None = None
    crc32_type: str | None = None


def _unsigned_checksummed_part(request: Any, **_: Any) -> None:
    """``before-sign`` of UploadPart: a part carrying its CRC32, which S3
    checks against the bytes, is signed with ``UNSIGNED-PAYLOAD`` instead of
    a SHA-256 of the part (which botocore computes in the event-loop thread:
    always over http, and over https when the checksum header is not one it
    added itself). An explicit ``payload_signing_enabled`` in the client's
    ``s3`` config still wins."""
    if _CHECKSUM_HEADER not in request.headers:
        return
    config = request.context.get("client_config")
    s3_config = dict(getattr(config, "s3", None) or {})
    if config is None or s3_config.get("payload_signing_enabled") is not None:
        return
    s3_config["payload_signing_enabled"] = False
    # A copy for this request only: the client's config is shared.
    config = copy.copy(config)
    config.s3 = s3_config
    request.context["client_config"] = config


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
        # Multipart uploads whose parts carry CRC32s (the store took
        # ChecksumAlgorithm=CRC32); the others send Content-MD5.
        self._crc_uploads: set[str] = set()
        self._hooked: Any = None

    @functools.cached_property
    def endpoint(self) -> str | None:
        """The S3-compatible service this store uses; None for AWS's own
        (looked up once, as botocore does: storage/endpoints.py)."""
        return s3_endpoint(self.fs)

    # -- client plumbing ----------------------------------------------------

    async def _client(self) -> Any:
        await self.fs.set_session()
        client = await self.fs.get_s3(self.bucket)
        if client is not self._hooked:  # s3fs may make a new client
            client.meta.events.register(
                "before-sign.s3.UploadPart",
                _unsigned_checksummed_part,
                unique_id="mlflow-bucket-unsigned-checksummed-part",
            )
            self._hooked = client
        return client

    async def _invoke(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        client = await self._client()
        response: dict[str, Any] = await getattr(client, method)(**params)
        body = response.get("Body")
        if body is not None:
            async with body as stream:
                response["Body"] = await stream.read()
        return response

    def _call(self, operation: str, key: str, method: str, **params: Any) -> dict[str, Any]:
        return self._run(operation, key, self._invoke, method, {"Bucket": self.bucket, **params})

    def _run(self, operation: str, key: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(*args)`` on s3fs's event loop, its failures classified."""
        url = self.url(key)
        try:
            return sync(self.fs.loop, fn, *args)
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
        except (NoCredentialsError, PartialCredentialsError) as exc:
            # Retrying cannot make credentials appear: say so at once.
            raise PermissionDenied(
                f"{exc} (set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an"
                " instance role; `mlflow-bucket doctor` checks)",
                operation=operation,
                url=url,
            ) from exc
        except (
            TimeoutError,
            HTTPClientError,
            BotoConnectionError,
            IncompleteReadError,
            aiohttp.ClientError,
            OSError,
        ) as exc:
            # Connection refused/reset, timeouts, truncated bodies: all worth retrying.
            raise TransientError(
                f"{type(exc).__name__}: {exc}", operation=operation, url=url
            ) from exc
        except BotoCoreError as exc:
            # The client's own set-up (region, parameters, config): not the network.
            raise StorageError(
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

    def _blob(self, key: str, out: Mapping[str, Any], size: int | None = None) -> S3BlobInfo:
        etag = str(out.get("ETag", "")).strip('"')
        metadata = dict(out.get("Metadata") or {})
        part_size = metadata.get(PART_SIZE_KEY, "")
        # Under SSE-KMS and SSE-C the ETag is not an MD5 of anything we sent:
        # leave it out rather than report a false mismatch.
        encrypted = str(out.get("ServerSideEncryption", "")).startswith("aws:kms") or bool(
            out.get("SSECustomerAlgorithm")
        )
        simple = not encrypted and "-" not in etag and len(etag) == 32
        checksum = out.get("ChecksumCRC32")
        kind = out.get("ChecksumType")
        return S3BlobInfo(
            key=key,
            size=int(out.get("ContentLength", 0)) if size is None else size,
            version=etag,
            md5=bytes.fromhex(etag) if simple else None,
            etag=None if encrypted else etag,
            part_size=int(part_size) if part_size.isdigit() else None,
            metadata=metadata,
            crc32=str(checksum) if checksum else None,
            crc32_type=str(kind) if kind else None,
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

    def _read_into(
        self, key: str, start: int, end: int, version: str | None, sink: Callable[[bytes], None]
    ) -> None:
        """Bytes [start, end) of ``key`` (one attempt), only if still at
        ``version``, handed to ``sink`` piece by piece as they arrive, in
        order, in the event-loop thread (storage/transfer.py writes them to
        the file there). An exception from ``sink`` ends the read and is
        raised as is; a failure of the request or of the body is transient,
        and the pieces the sink got before it stay good."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full(key),
            "Range": f"bytes={start}-{end - 1}",
        }
        if version:
            params["IfMatch"] = f'"{version}"'
        # In a tuple: fsspec's sync() raises an exception it is handed back.
        (failure,) = self._run("get", key, self._stream, params, sink)
        if failure is not None:
            raise failure

    async def _stream(
        self, params: dict[str, Any], sink: Callable[[bytes], None]
    ) -> tuple[Exception | None]:
        client = await self._client()
        out = await client.get_object(**params)
        body = out["Body"]
        # aiobotocore's aiohttp body: its pieces as received, no joining
        # (its read(n) joins them into n-byte strings).
        content = getattr(getattr(body, "raw_stream", None), "content", None)
        try:
            while True:
                if content is not None:
                    data, boundary = await content.readchunk()
                    if not data and boundary:  # the end of an HTTP chunk
                        continue
                else:
                    data = await body.read(_STREAM_PIECE)
                if not data:
                    return (None,)
                try:
                    sink(data)
                except Exception as exc:  # the sink's own error: not the network's
                    return (exc,)
        finally:
            body.close()

    def _stat_blob(self, key: str) -> S3BlobInfo:
        out = self._call("head", key, "head_object", Key=self._full(key), ChecksumMode="ENABLED")
        return self._blob(key, out)

    def mpu_start(self, key: str, *, content_type: str | None, metadata: Mapping[str, str]) -> str:
        return self._mpu_start(key, content_type, metadata, checksummed=True)

    def _mpu_start(
        self, key: str, content_type: str | None, metadata: Mapping[str, str], checksummed: bool
    ) -> str:
        params: dict[str, Any] = {"Key": self._full(key), "Metadata": dict(metadata)}
        if content_type:
            params["ContentType"] = content_type
        if checksummed:
            params["ChecksumAlgorithm"] = "CRC32"
        out = self.retry.call(
            lambda: self._call("put", key, "create_multipart_upload", **params),
            f"start upload of {self.url(key)}",
        )
        upload_id = str(out["UploadId"])
        # A store without additional checksums (some S3-compatible ones)
        # does not echo the algorithm: its parts go with Content-MD5, and the
        # object is verified by its multipart ETag.
        if checksummed and str(out.get("ChecksumAlgorithm", "")).upper() == "CRC32":
            self._crc_uploads.add(upload_id)
        return upload_id

    def mpu_checksummed(self, upload_id: str) -> bool:
        """Whether the parts of this upload carry CRC32s (then ``mpu_put_part``
        needs no MD5, and ``mpu_complete`` checks the object's CRC32)."""
        return upload_id in self._crc_uploads

    def mpu_put_part(
        self, key: str, upload_id: str, number: int, data: bytes, *, crc32c: int, md5: bytes
    ) -> str:
        """Upload one part; ``md5`` is used only by uploads that are not
        ``mpu_checksummed`` (those compute their CRC32 here, in the caller's
        thread, and return it in the token)."""
        params: dict[str, Any] = {
            "Key": self._full(key),
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": data,
        }
        checksum = ""
        if upload_id in self._crc_uploads:
            # S3 rejects the part (400 BadDigest) if the bytes do not match.
            checksum = params["ChecksumCRC32"] = crc32_b64(crc32(data))
        else:
            if len(md5) != 16:
                raise ValueError(f"part {number} of {self.url(key)}: an MD5 is needed")
            params["ContentMD5"] = base64.b64encode(md5).decode()
        out = self.retry.call(
            lambda: self._call("put", key, "upload_part", **params),
            f"upload part {number} of {self.url(key)}",
        )
        etag = str(out.get("ETag", "")).strip('"')
        return f"{etag}{_TOKEN_SEP}{checksum}" if checksum else etag

    def mpu_complete(
        self,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
    ) -> BlobInfo:
        """Assemble the parts and read back the object's size and ETag. Parts
        that carried CRC32s (their tokens say so) are listed with them, which
        S3 checks, and the object's COMPOSITE CRC32 must then be theirs:
        otherwise ``ChecksumMismatch``. Tokens may also be bare ETags (the
        presigned uploads of ``mpu_presign``)."""
        from .transfer import ChecksumMismatch

        listing: list[dict[str, Any]] = []
        checksums: list[str] = []
        for number, token in sorted(parts):
            etag, _, checksum = token.partition(_TOKEN_SEP)
            entry = {"PartNumber": number, "ETag": f'"{etag}"'}
            if checksum:
                entry["ChecksumCRC32"] = checksum
                checksums.append(checksum)
            listing.append(entry)
        checked = bool(checksums) and len(checksums) == len(listing)
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
                # its answer was lost. The object's checksum (or ETag, checked
                # by the caller) tells whether it is really ours.
                if attempts == 1:
                    raise

        try:
            self.retry.call(complete, f"complete upload of {self.url(key)}")
        finally:
            self._crc_uploads.discard(upload_id)
        # Read back what the store holds: size, ETag, CRC32, for verification.
        info = self.retry.call(lambda: self._stat_blob(key), f"head {self.url(key)}")
        # Compared when the store reports it, like every other checksum.
        if checked and info.crc32 and info.crc32_type in (None, "COMPOSITE"):
            expected = crc32_composite(checksums)
            if not composite_matches(expected, info.crc32):
                raise ChecksumMismatch(
                    f"CRC32 {expected} of the parts sent, {info.crc32} in the store",
                    operation="upload",
                    url=self.url(key),
                )
        return info

    def mpu_abort(self, key: str, upload_id: str) -> None:
        self._crc_uploads.discard(upload_id)
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
        client = await self._client()
        url: str = await client.generate_presigned_url(
            method, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires
        )
        return url

    def mpu_presign(
        self, key: str, parts: int, *, content_type: str | None, expires: int = 3600
    ) -> tuple[str, list[str]]:
        # Someone else sends the parts, without CRC32s: no ChecksumAlgorithm,
        # or S3 would refuse to complete the upload without them.
        upload_id = self._mpu_start(key, content_type, {}, checksummed=False)
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
