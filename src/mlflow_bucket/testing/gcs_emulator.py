"""An in-memory Google Cloud Storage JSON-API emulator for tests.

Written because the off-the-shelf emulator ignores ``ifGenerationMatch`` (an exclusive create
silently overwrites), cannot list with ``startOffset``/``maxResults``/``pageToken``, serves one
request at a time, and corrupts multipart bodies ending in ``\\r``; the stores' race tests need
all of those to behave as on GCS.

What is served (paths under ``/storage/v1``, ``/upload/storage/v1``, ``/download/storage/v1``
and ``/batch/storage/v1``): buckets insert/get/list/patch/delete and ``storageLayout``; object
uploads (``media``, ``multipart``, ``resumable``), get (metadata or ``alt=media`` with ranges),
list (prefix, delimiter, start/end offsets, pages, ``includeTrailingDelimiter``,
``matchGlob``), patch/update, delete, compose, rewriteTo/copyTo, moveTo, and batches of
embedded requests. Generation and metageneration preconditions are checked atomically with
the write they guard. Not served: ACLs, IAM, notifications, HMAC keys, object versioning
(only live objects are kept), retention policies, XML API, signed URLs.

Standard library only; ``google_crc32c`` is used when installed for speed.

Admin endpoints (not part of GCS): ``GET /_emulator/health``, ``POST /_emulator/reset``
(drops every bucket, object and upload session) and ``/_emulator/fail`` (raises inside a
handler, to check that the server answers 500 and carries on).

Run it with ``python -m mlflow_bucket.testing.gcs_emulator --port 9023``, or from Python with
:class:`GcsEmulator` (a subprocess, what tests use) or :class:`ThreadedGcsEmulator` (a thread
in this process, handy under a debugger).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import email.message
import email.utils
import hashlib
import http.client
import json
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from mlflow_bucket.testing._process import ServerProcess, announce_ready, exit_with_parent

__all__ = [
    "GcsEmulator",
    "GcsEmulatorServer",
    "GcsState",
    "ThreadedGcsEmulator",
    "crc32c",
    "main",
    "make_server",
    "serve",
]

_MODULE = "mlflow_bucket.testing.gcs_emulator"
_JSON_TYPE = "application/json; charset=UTF-8"
_MAX_LIST_RESULTS = 1000  # GCS's default and cap for objects.list and buckets.list
_MAX_COMPOSE_SOURCES = 32
_MAX_OBJECT_NAME_BYTES = 1024
_BUCKET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(?:\*|(\d+)-(\d+))/(\*|\d+)$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Top-level object fields a client may set on insert, patch and update, echoed back as given.
_WRITABLE_OBJECT_FIELDS = frozenset(
    {
        "cacheControl",
        "contentDisposition",
        "contentEncoding",
        "contentLanguage",
        "customTime",
        "eventBasedHold",
        "storageClass",
        "temporaryHold",
    }
)
# Bucket fields that only the server sets: a client's values are ignored.
_SERVER_BUCKET_FIELDS = frozenset(
    {"kind", "id", "selfLink", "name", "metageneration", "etag", "timeCreated", "updated"}
)

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------------------------
# checksums and formatting


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def _crc32c_py(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    import google_crc32c as _gcrc

    def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
        """CRC32C (Castagnoli) of ``data``, continuing from ``crc``."""
        return int(_gcrc.extend(crc, bytes(data)))

except ImportError:  # pragma: no cover - google-cloud-storage pulls google_crc32c in
    crc32c = _crc32c_py


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _crc_b64(value: int) -> str:
    # GCS encodes crc32c as base64 of the big-endian 4-byte value.
    return _b64(value.to_bytes(4, "big"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def _rfc3339(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _quote_name(name: str) -> str:
    return quote(name, safe="")


# --------------------------------------------------------------------------------------------
# requests, responses and errors


@dataclass(frozen=True)
class _Request:
    method: str
    path: str  # percent-encoded, without the query
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    base_url: str  # scheme://host[:port] the client used; links in resources point there

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None


class GcsError(Exception):
    """An error answered to the client in GCS's JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        extra: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = list(headers)
        self.extra = dict(extra or {})

    def response(self) -> _Response:
        if self.status == HTTPStatus.NOT_MODIFIED:
            return _Response(self.status, headers=self.headers)
        detail = {"message": self.message, "domain": "global", "reason": self.reason}
        detail.update(self.extra)
        doc = {"error": {"code": self.status, "message": self.message, "errors": [detail]}}
        return _json_response(doc, self.status, self.headers)


def _json_response(
    doc: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> _Response:
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return _Response(status, body, [("Content-Type", _JSON_TYPE), *headers])


def _bad_request(message: str, reason: str = "invalid") -> GcsError:
    return GcsError(400, message, reason)


def _precondition_failed() -> GcsError:
    return GcsError(
        412,
        "At least one of the pre-conditions you specified did not hold.",
        "conditionNotMet",
        extra={"locationType": "header", "location": "If-Match"},
    )


def _no_bucket(bucket: str) -> GcsError:
    return GcsError(404, f"The specified bucket does not exist: {bucket}", "notFound")


def _no_object(bucket: str, name: str) -> GcsError:
    return GcsError(404, f"No such object: {bucket}/{name}", "notFound")


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _bad_request(f"Invalid value for {name}: {raw!r}") from None


def _bool_param(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1", "yes")


def _json_body(req: _Request) -> JsonDict:
    if not req.body.strip():
        return {}
    try:
        doc = json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_request(f"Parse Error: request body is not JSON ({exc})", "parseError") from None
    if not isinstance(doc, dict):
        raise _bad_request("Parse Error: request body must be a JSON object", "parseError")
    return doc


def _check_object_name(name: str) -> None:
    # GCS's naming rules: 1-1024 bytes of UTF-8, no CR/LF, not "." or "..".
    if not name:
        raise _bad_request("Required: object name", "required")
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_OBJECT_NAME_BYTES:
        raise _bad_request("The object name is too long (over 1024 bytes).")
    if "\r" in name or "\n" in name or name in (".", ".."):
        raise _bad_request(f"Invalid object name: {name!r}")


# --------------------------------------------------------------------------------------------
# multipart bodies


def _content_type_param(value: str | None, param: str) -> tuple[str, str | None]:
    msg = email.message.Message()
    msg["content-type"] = value or "application/octet-stream"
    raw = msg.get_param(param)
    return msg.get_content_type(), raw if isinstance(raw, str) else None


def _split_headers(block: bytes, eol: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(eol):
        if not line.strip():
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise _bad_request(f"Malformed header line in multipart part: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Parts of a multipart body, byte-exact.

    Clients differ in line endings: gcsfs writes LF, google-cloud-storage CRLF. The line ending
    after the first boundary decides which one delimits every part, so a payload's own trailing
    ``\\r`` (or ``\\r\\n``) stays in the payload instead of being eaten with the delimiter.
    """
    dash = b"--" + boundary.encode("latin-1")
    if body.startswith(dash):
        first = 0
    else:
        idx = body.find(b"\n" + dash)  # a preamble may precede the first boundary line
        if idx < 0:
            raise _bad_request("Multipart body does not contain its boundary")
        first = idx + 1
    pos = first + len(dash)
    if body.startswith(b"--", pos):
        return []
    while body[pos : pos + 1] in (b" ", b"\t"):
        pos += 1  # RFC 2046 allows transport padding after a boundary
    if body.startswith(b"\r\n", pos):
        eol = b"\r\n"
    elif body.startswith(b"\n", pos):
        eol = b"\n"
    else:
        raise _bad_request("Multipart boundary line must end with CRLF or LF")
    pos += len(eol)
    delimiter = eol + dash
    parts: list[tuple[dict[str, str], bytes]] = []
    while True:
        end = body.find(delimiter, pos)
        if end < 0:
            raise _bad_request("Multipart body has no closing boundary")
        raw = body[pos:end]
        if raw.startswith(eol):
            parts.append(({}, raw[len(eol) :]))
        else:
            split = raw.find(eol + eol)
            if split < 0:
                parts.append((_split_headers(raw, eol), b""))
            else:
                parts.append((_split_headers(raw[:split], eol), raw[split + 2 * len(eol) :]))
        pos = end + len(delimiter)
        if body.startswith(b"--", pos):
            return parts
        while body[pos : pos + 1] in (b" ", b"\t"):
            pos += 1
        if not body.startswith(eol, pos):
            raise _bad_request("Multipart boundary line must end with a line break")
        pos += len(eol)


# --------------------------------------------------------------------------------------------
# stored state


@dataclass(frozen=True)
class _Object:
    """One live object. Immutable: writes replace the record, so readers need no lock."""

    bucket: str
    name: str
    data: bytes
    generation: int
    metageneration: int
    content_type: str
    created: float
    updated: float
    md5: str | None  # base64; None for composed objects, as on GCS
    crc32c: str  # base64 of the big-endian value
    metadata: Mapping[str, str]
    fields: Mapping[str, Any]  # other client-set top-level fields (_WRITABLE_OBJECT_FIELDS)
    component_count: int | None = None

    def resource(self, base_url: str) -> JsonDict:
        qb, qn = _quote_name(self.bucket), _quote_name(self.name)
        etag = _b64(b"\x08" + _varint(self.generation) + b"\x10" + _varint(self.metageneration))
        doc: JsonDict = {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base_url}/storage/v1/b/{qb}/o/{qn}",
            "mediaLink": (
                f"{base_url}/download/storage/v1/b/{qb}/o/{qn}"
                f"?generation={self.generation}&alt=media"
            ),
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": str(self.metageneration),
            "contentType": self.content_type,
            "storageClass": "STANDARD",
            "size": str(len(self.data)),
            "crc32c": self.crc32c,
            "etag": etag,
            "timeCreated": _rfc3339(self.created),
            "updated": _rfc3339(self.updated),
            "timeStorageClassUpdated": _rfc3339(self.created),
        }
        if self.md5 is not None:
            doc["md5Hash"] = self.md5
        if self.component_count is not None:
            doc["componentCount"] = self.component_count
        doc.update(self.fields)
        if self.metadata:
            doc["metadata"] = dict(self.metadata)
        return doc


@dataclass
class _Bucket:
    name: str
    created: float
    updated: float
    metageneration: int
    extra: JsonDict  # client-provided fields (labels, versioning, ...), echoed back
    objects: dict[str, _Object] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # sorted keys of ``objects``

    def resource(self, base_url: str) -> JsonDict:
        doc: JsonDict = {
            "kind": "storage#bucket",
            "id": self.name,
            "selfLink": f"{base_url}/storage/v1/b/{_quote_name(self.name)}",
            "projectNumber": "0",
            "name": self.name,
            "timeCreated": _rfc3339(self.created),
            "updated": _rfc3339(self.updated),
            "metageneration": str(self.metageneration),
            "location": "US",
            "locationType": "multi-region",
            "storageClass": "STANDARD",
            "etag": _b64(b"\x10" + _varint(self.metageneration)),
        }
        doc.update(self.extra)
        return doc

    def put(self, obj: _Object) -> None:
        if obj.name not in self.objects:
            bisect.insort(self.names, obj.name)
        self.objects[obj.name] = obj

    def remove(self, name: str) -> None:
        del self.objects[name]
        idx = bisect.bisect_left(self.names, name)
        del self.names[idx]


@dataclass(frozen=True)
class _Conditions:
    """Generation/metageneration preconditions of one request.

    A missing object counts as generation 0, so ``ifGenerationMatch=0`` means "only if no
    live object exists" and ``ifGenerationNotMatch=0`` means "only if one does".
    """

    generation_match: int | None = None
    generation_not_match: int | None = None
    metageneration_match: int | None = None
    metageneration_not_match: int | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str], prefix: str = "if") -> _Conditions:
        return cls(
            _int_param(query, f"{prefix}GenerationMatch"),
            _int_param(query, f"{prefix}GenerationNotMatch"),
            _int_param(query, f"{prefix}MetagenerationMatch"),
            _int_param(query, f"{prefix}MetagenerationNotMatch"),
        )

    def check(self, current: _Object | None, *, read: bool = False) -> None:
        generation = current.generation if current else 0
        if self.generation_match is not None and generation != self.generation_match:
            raise _precondition_failed()
        if self.metageneration_match is not None and (
            current is None or current.metageneration != self.metageneration_match
        ):
            raise _precondition_failed()
        not_match = (
            self.generation_not_match is not None and generation == self.generation_not_match
        ) or (
            self.metageneration_not_match is not None
            and current is not None
            and current.metageneration == self.metageneration_not_match
        )
        if not_match:
            if read:
                # Reads answer a failed *NotMatch like an HTTP conditional GET.
                raise GcsError(304, "Not Modified", "notModified")
            raise _precondition_failed()


@dataclass
class _Upload:
    """A resumable upload session."""

    upload_id: str
    bucket: str
    name: str
    content_type: str
    resource: JsonDict
    conditions: _Conditions
    data: bytearray = field(default_factory=bytearray)
    total: int | None = None
    md5: Any = field(default_factory=hashlib.md5)  # hashlib object, updated per chunk
    crc: int = 0
    result: _Object | None = None  # set once finalized, so a retried last chunk gets 200 again
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _PageToken:
    key: str
    after_prefix: bool  # the last entry was a prefix: skip every name under it

    def encode(self) -> str:
        raw = json.dumps({"k": self.key, "p": self.after_prefix}).encode("utf-8")
        return base64.urlsafe_b64encode(raw).decode("ascii")

    @classmethod
    def decode(cls, token: str) -> _PageToken:
        try:
            doc = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
            return cls(str(doc["k"]), bool(doc["p"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise _bad_request(f"Invalid pageToken: {token!r}") from None


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    last = ord(prefix[-1])
    if last >= sys.maxunicode:
        return None
    return prefix[:-1] + chr(last + 1)


def _skip_prefix(names: list[str], prefix: str, lo: int) -> int:
    succ = _successor(prefix)
    if succ is not None:
        return bisect.bisect_left(names, succ, lo)
    while lo < len(names) and names[lo].startswith(prefix):
        lo += 1
    return lo


def _glob_regex(glob: str) -> re.Pattern[str]:
    """Regex for GCS ``matchGlob``: ``*``, ``**`` (crosses ``/``), ``?``, ``[..]``, ``{a,b}``."""
    out: list[str] = []
    i, depth = 0, 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                raise _bad_request(f"Invalid matchGlob: {glob!r}")
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "{":
            out.append("(?:")
            depth += 1
        elif c == "}" and depth:
            out.append(")")
            depth -= 1
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise _bad_request(f"Invalid matchGlob: {glob!r}")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        raise _bad_request(f"Invalid matchGlob: {glob!r}") from None


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single byte range, or None to serve the whole object.

    Unparsable or multi-range headers are ignored, as HTTP allows; unsatisfiable ones are 416.
    """
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first_s, last_s = match.groups()
    if first_s == "":
        if last_s == "":
            return None
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> GcsError:
    return GcsError(
        416,
        "Request range not satisfiable",
        "requestedRangeNotSatisfiable",
        headers=[("Content-Range", f"bytes */{size}")],
    )


# --------------------------------------------------------------------------------------------
# the emulated service


class GcsState:
    """The emulated service: all buckets in memory behind one lock, plus request routing.

    :meth:`handle` maps a parsed HTTP request to a response and never raises; it is shared by
    the HTTP server and by batch requests, whose embedded requests are dispatched here too.
    """

    def __init__(self, *, log_errors: bool = True) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._uploads: dict[str, _Upload] = {}
        self._last_generation = 0
        self._log_errors = log_errors

    # -- entry point ------------------------------------------------------------------------

    def handle(self, req: _Request) -> _Response:
        try:
            return self._route(req)
        except GcsError as exc:
            return exc.response()
        except Exception as exc:  # a bug here must not take the server down
            if self._log_errors:
                traceback.print_exc(file=sys.stderr)
            return GcsError(
                500, f"Emulator error: {type(exc).__name__}: {exc}", "backendError"
            ).response()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._uploads.clear()

    # -- routing ----------------------------------------------------------------------------

    def _route(self, req: _Request) -> _Response:
        raw = req.path.split("/")[1:]
        if raw and raw[-1] == "":
            raw.pop()  # tolerate a trailing slash
        try:
            segs = [unquote(s, errors="strict") for s in raw]
        except UnicodeDecodeError:
            raise _bad_request("Path is not valid percent-encoded UTF-8") from None
        m = req.method
        match segs:
            case ["_emulator", "health"]:
                return _json_response({"ok": True})
            case ["_emulator", "reset"] if m == "POST":
                self.reset()
                return _json_response({})
            case ["_emulator", "fail"]:
                raise RuntimeError("failure requested through /_emulator/fail")
            case ["batch", "storage", "v1"] | ["batch"] if m == "POST":
                return self._batch(req)
            case ["storage", "v1", *rest]:
                return self._route_json_api(req, rest)
            case ["upload", "storage", "v1", "b", bucket, "o"]:
                return self._route_upload(req, bucket)
            case ["download", "storage", "v1", "b", bucket, "o", name] if m in ("GET", "HEAD"):
                return self._get_object(req, bucket, name, media=True)
        raise self._unknown_route(req)

    def _route_json_api(self, req: _Request, segs: list[str]) -> _Response:
        m = req.method
        match segs:
            case ["b"] if m == "GET":
                return self._list_buckets(req)
            case ["b"] if m == "POST":
                return self._insert_bucket(req)
            case ["b", bucket] if m in ("GET", "HEAD"):
                return self._get_bucket(req, bucket)
            case ["b", bucket] if m in ("PATCH", "PUT"):
                return self._patch_bucket(req, bucket)
            case ["b", bucket] if m == "DELETE":
                return self._delete_bucket(bucket)
            case ["b", bucket, "storageLayout"] if m == "GET":
                return self._storage_layout(bucket)
            case ["b", bucket, "o"] if m == "GET":
                return self._list_objects(req, bucket)
            case ["b", bucket, "o"] if m == "POST":
                # objects.insert without media: metadata only, empty content
                return self._insert_object(req, bucket, _json_body(req), b"", None)
            case ["b", bucket, "o", name] if m in ("GET", "HEAD"):
                return self._get_object(req, bucket, name, media=req.query.get("alt") == "media")
            case ["b", bucket, "o", name] if m == "DELETE":
                return self._delete_object(req, bucket, name)
            case ["b", bucket, "o", name] if m in ("PATCH", "PUT"):
                return self._patch_object(req, bucket, name, replace_all=m == "PUT")
            case ["b", bucket, "o", name, "compose"] if m == "POST":
                return self._compose(req, bucket, name)
            case ["b", sb, "o", so, "rewriteTo" | "copyTo" as op, "b", db, "o", do] if m == "POST":
                return self._rewrite(req, sb, so, db, do, rewrite=op == "rewriteTo")
            case ["b", bucket, "o", src, "moveTo", "o", dst] if m == "POST":
                return self._move(req, bucket, src, dst)
        raise self._unknown_route(req)

    def _route_upload(self, req: _Request, bucket: str) -> _Response:
        upload_id = req.query.get("upload_id")
        if upload_id is not None:
            if req.method in ("PUT", "POST"):
                return self._upload_chunk(req, upload_id)
            if req.method == "DELETE":
                return self._cancel_upload(upload_id)
            raise self._unknown_route(req)
        if req.method != "POST":
            raise self._unknown_route(req)
        kind = req.query.get("uploadType")
        if kind == "media":
            return self._insert_object(req, bucket, {}, req.body, req.header("content-type"))
        if kind == "multipart":
            return self._multipart_upload(req, bucket)
        if kind == "resumable":
            return self._start_upload(req, bucket)
        raise _bad_request(f"Unsupported or missing uploadType: {kind!r}")

    @staticmethod
    def _unknown_route(req: _Request) -> GcsError:
        return GcsError(
            404,
            f"The GCS emulator has no route for {req.method} {req.path} (object names must be"
            " percent-encoded as one path segment, '/' included)",
            "notFound",
        )

    # -- helpers under the lock -------------------------------------------------------------

    def _bucket(self, name: str) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            raise _no_bucket(name)
        return bucket

    def _live(self, bucket: str, name: str, generation: int | None = None) -> _Object:
        obj = self._bucket(bucket).objects.get(name)
        if obj is None or (generation is not None and obj.generation != generation):
            raise _no_object(bucket, name)
        return obj

    def _next_generation(self) -> int:
        # Time in microseconds like GCS, forced strictly increasing across all writes.
        self._last_generation = max(time.time_ns() // 1000, self._last_generation + 1)
        return self._last_generation

    def _commit(
        self,
        bucket_name: str,
        name: str,
        conditions: _Conditions,
        build: Callable[[int, _Object | None], _Object],
    ) -> _Object:
        """Check preconditions against the live object and write, as one atomic step."""
        with self._lock:
            bucket = self._bucket(bucket_name)
            current = bucket.objects.get(name)
            conditions.check(current)
            obj = build(self._next_generation(), current)
            bucket.put(obj)
            return obj

    # -- buckets ----------------------------------------------------------------------------

    def _insert_bucket(self, req: _Request) -> _Response:
        body = _json_body(req)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise _bad_request("Required: bucket name", "required")
        if not _BUCKET_NAME_RE.match(name) or ".." in name:
            raise _bad_request(f"Invalid bucket name: {name!r}")
        extra = {k: v for k, v in body.items() if k not in _SERVER_BUCKET_FIELDS}
        now = time.time()
        with self._lock:
            if name in self._buckets:
                raise GcsError(
                    409,
                    "Your previous request to create the named bucket succeeded and you"
                    " already own it.",
                    "conflict",
                )
            bucket = self._buckets[name] = _Bucket(name, now, now, 1, extra)
            doc = bucket.resource(req.base_url)
        return _json_response(doc)

    def _get_bucket(self, req: _Request, name: str) -> _Response:
        with self._lock:
            bucket = self._bucket(name)
            doc = bucket.resource(req.base_url)
            metageneration = bucket.metageneration
        self._check_bucket_conditions(req, metageneration)
        return _json_response(doc)

    @staticmethod
    def _check_bucket_conditions(req: _Request, metageneration: int) -> None:
        match = _int_param(req.query, "ifMetagenerationMatch")
        not_match = _int_param(req.query, "ifMetagenerationNotMatch")
        if (match is not None and match != metageneration) or (
            not_match is not None and not_match == metageneration
        ):
            raise _precondition_failed()

    def _list_buckets(self, req: _Request) -> _Response:
        prefix = req.query.get("prefix", "")
        limit = self._max_results(req)
        token = req.query.get("pageToken")
        after = _PageToken.decode(token).key if token else None
        with self._lock:
            names = sorted(n for n in self._buckets if n.startswith(prefix))
            if after is not None:
                names = names[bisect.bisect_right(names, after) :]
            page = [self._buckets[n].resource(req.base_url) for n in names[:limit]]
        doc: JsonDict = {"kind": "storage#buckets"}
        if page:
            doc["items"] = page
        if len(names) > limit:
            doc["nextPageToken"] = _PageToken(page[-1]["name"], False).encode()
        return _json_response(doc)

    def _patch_bucket(self, req: _Request, name: str) -> _Response:
        body = _json_body(req)
        with self._lock:
            bucket = self._bucket(name)
            self._check_bucket_conditions(req, bucket.metageneration)
            if req.method == "PUT":
                bucket.extra = {}
            for key, value in body.items():
                if key in _SERVER_BUCKET_FIELDS:
                    continue
                if value is None:
                    bucket.extra.pop(key, None)
                elif key == "labels" and isinstance(value, dict):
                    labels = dict(bucket.extra.get("labels") or {})
                    labels.update(value)
                    bucket.extra["labels"] = {k: v for k, v in labels.items() if v is not None}
                else:
                    bucket.extra[key] = value
            bucket.metageneration += 1
            bucket.updated = time.time()
            doc = bucket.resource(req.base_url)
        return _json_response(doc)

    def _delete_bucket(self, name: str) -> _Response:
        with self._lock:
            bucket = self._bucket(name)
            if bucket.objects:
                raise GcsError(409, "The bucket you tried to delete is not empty.", "conflict")
            del self._buckets[name]
        return _Response(204)

    def _storage_layout(self, name: str) -> _Response:
        with self._lock:
            self._bucket(name)
        return _json_response(
            {
                "kind": "storage#storageLayout",
                "bucket": name,
                "location": "US",
                "locationType": "multi-region",
                "hierarchicalNamespace": {"enabled": False},
            }
        )

    # -- object reads -----------------------------------------------------------------------

    def _get_object(self, req: _Request, bucket: str, name: str, *, media: bool) -> _Response:
        generation = _int_param(req.query, "generation")
        conditions = _Conditions.parse(req.query)
        with self._lock:
            obj = self._live(bucket, name, generation)
        conditions.check(obj, read=True)
        if not media:
            return _json_response(obj.resource(req.base_url))
        size = len(obj.data)
        headers = [
            ("Content-Type", obj.content_type),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{obj.md5 or obj.crc32c}"'),
            ("Last-Modified", email.utils.formatdate(obj.updated, usegmt=True)),
            ("x-goog-generation", str(obj.generation)),
            ("x-goog-metageneration", str(obj.metageneration)),
            ("x-goog-stored-content-length", str(size)),
            ("x-goog-stored-content-encoding", "identity"),
            ("x-goog-storage-class", "STANDARD"),
        ]
        span = _parse_range(req.header("range"), size)
        if span is None:
            hashes = f"crc32c={obj.crc32c}" + (f",md5={obj.md5}" if obj.md5 else "")
            headers.append(("x-goog-hash", hashes))
            return _Response(200, obj.data, headers)
        first, last = span
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        return _Response(206, obj.data[first : last + 1], headers)

    def _max_results(self, req: _Request) -> int:
        value = _int_param(req.query, "maxResults")
        if value is None or value == 0:
            return _MAX_LIST_RESULTS
        if value < 0:
            raise _bad_request(f"Invalid value for maxResults: {value}")
        return min(value, _MAX_LIST_RESULTS)

    def _list_objects(self, req: _Request, bucket_name: str) -> _Response:
        q = req.query
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter") or None
        start = q.get("startOffset") or ""
        end = q.get("endOffset") or None
        glob = _glob_regex(q["matchGlob"]) if q.get("matchGlob") else None
        trailing = _bool_param(q, "includeTrailingDelimiter")
        limit = self._max_results(req)
        token = _PageToken.decode(q["pageToken"]) if q.get("pageToken") else None

        items: list[_Object] = []
        prefixes: list[str] = []
        last: _PageToken | None = None
        more = False
        with self._lock:
            bucket = self._bucket(bucket_name)
            names, objects = bucket.names, bucket.objects
            # startOffset is inclusive, endOffset exclusive (GCS objects.list).
            i = bisect.bisect_left(names, max(prefix, start))
            if token is not None:
                if token.after_prefix:
                    i = max(i, _skip_prefix(names, token.key, i))
                else:
                    i = max(i, bisect.bisect_right(names, token.key))
            count, seen_prefix = 0, None
            while i < len(names):
                name = names[i]
                if not name.startswith(prefix) or (end is not None and name >= end):
                    break
                if glob is not None and not glob.fullmatch(name):
                    i += 1
                    continue
                cut = name.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0 and delimiter is not None:
                    found = name[: cut + len(delimiter)]
                    if found == seen_prefix:
                        i += 1
                        continue
                    with_item = trailing and name == found
                    size = 2 if with_item else 1
                    if count and count + size > limit:
                        more = True
                        break
                    prefixes.append(found)
                    if with_item:
                        items.append(objects[name])
                    count += size
                    seen_prefix = found
                    last = _PageToken(found, True)
                    # Without a glob every name under the prefix folds into it: jump past them.
                    i = _skip_prefix(names, found, i) if glob is None else i + 1
                    continue
                if count + 1 > limit:
                    more = True
                    break
                items.append(objects[name])
                count += 1
                last = _PageToken(name, False)
                i += 1
        doc: JsonDict = {"kind": "storage#objects"}
        if items:
            doc["items"] = [obj.resource(req.base_url) for obj in items]
        if prefixes:
            doc["prefixes"] = prefixes
        if more and last is not None:
            doc["nextPageToken"] = last.encode()
        return _json_response(doc)

    # -- object writes ----------------------------------------------------------------------

    @staticmethod
    def _client_fields(resource: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        metadata = resource.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _bad_request("Invalid value for metadata: must be an object")
        meta = {str(k): str(v) for k, v in metadata.items() if v is not None}
        fields = {
            k: v for k, v in resource.items() if k in _WRITABLE_OBJECT_FIELDS and v is not None
        }
        return meta, fields

    @staticmethod
    def _verify_client_hashes(
        resource: Mapping[str, Any], headers: Mapping[str, str], md5: str, crc: str
    ) -> None:
        # GCS rejects an upload whose declared checksum differs from the received bytes.
        declared_md5 = resource.get("md5Hash")
        declared_crc = resource.get("crc32c")
        for part in headers.get("x-goog-hash", "").split(","):
            label, _, value = part.strip().partition("=")
            if label == "md5":
                declared_md5 = value
            elif label == "crc32c":
                declared_crc = value
        if declared_md5 is not None and declared_md5 != md5:
            raise _bad_request(
                f"Provided MD5 hash {declared_md5!r} doesn't match calculated MD5 hash {md5!r}."
            )
        if declared_crc is not None and declared_crc != crc:
            raise _bad_request(
                f"Provided CRC32C {declared_crc!r} doesn't match calculated CRC32C {crc!r}."
            )

    def _insert_object(
        self,
        req: _Request,
        bucket: str,
        resource: JsonDict,
        data: bytes,
        media_type: str | None,
        *,
        hashes: tuple[str, str] | None = None,
        conditions: _Conditions | None = None,
        name: str | None = None,
    ) -> _Response:
        obj = self._store(req, bucket, resource, data, media_type, hashes, conditions, name)
        return _json_response(obj.resource(req.base_url))

    def _store(
        self,
        req: _Request,
        bucket: str,
        resource: JsonDict,
        data: bytes,
        media_type: str | None,
        hashes: tuple[str, str] | None,
        conditions: _Conditions | None,
        name: str | None,
    ) -> _Object:
        if name is None:
            name = req.query.get("name") or resource.get("name")
        if not isinstance(name, str):
            raise _bad_request("Required: object name (the 'name' parameter)", "required")
        _check_object_name(name)
        if conditions is None:
            conditions = _Conditions.parse(req.query)
        content_type = resource.get("contentType") or media_type or "application/octet-stream"
        metadata, fields = self._client_fields(resource)
        if hashes is None:
            # Hash outside the lock: it is the slow part of a write.
            hashes = (_b64(hashlib.md5(data).digest()), _crc_b64(crc32c(data)))
        md5, crc = hashes
        self._verify_client_hashes(resource, req.headers, md5, crc)
        now = time.time()

        def build(generation: int, _current: _Object | None) -> _Object:
            return _Object(
                bucket=bucket,
                name=name,
                data=data,
                generation=generation,
                metageneration=1,
                content_type=str(content_type),
                created=now,
                updated=now,
                md5=md5,
                crc32c=crc,
                metadata=metadata,
                fields=fields,
            )

        return self._commit(bucket, name, conditions, build)

    def _multipart_upload(self, req: _Request, bucket: str) -> _Response:
        mime, boundary = _content_type_param(req.header("content-type"), "boundary")
        if not mime.startswith("multipart/") or not boundary:
            raise _bad_request(
                "uploadType=multipart needs a multipart/related body with a boundary"
            )
        parts = _split_multipart(req.body, boundary)
        if len(parts) != 2:
            raise _bad_request(
                f"Multipart upload must have 2 parts (metadata, media), got {len(parts)}"
            )
        (_, meta_raw), (media_headers, data) = parts
        try:
            resource = json.loads(meta_raw) if meta_raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise _bad_request(
                "Parse Error: multipart metadata part is not JSON", "parseError"
            ) from None
        if not isinstance(resource, dict):
            raise _bad_request(
                "Parse Error: multipart metadata must be a JSON object", "parseError"
            )
        media_type = media_headers.get("content-type")
        declared = resource.get("contentType")
        if declared is not None and media_type is not None and declared != media_type:
            # Google documents one type per upload (the media part's Content-Type; contentType
            # in the resource sets the same property) but not which wins when the two differ:
            # its own testbench refuses the request with 412, fake-gcs-server keeps the media
            # part's, and this emulator used to keep the resource's, which let a client that
            # declared two types pass here and lose its type elsewhere. Refused, as Google's
            # testbench does (docs/storage.md).
            raise GcsError(
                412,
                f"Content-Type validation failed: the metadata's contentType {declared!r} "
                f"differs from the media part's Content-Type {media_type!r}",
                "conditionNotMet",
            )
        if media_headers.get("content-transfer-encoding", "").lower() == "base64":
            try:
                data = base64.b64decode(data, validate=False)
            except binascii.Error:
                raise _bad_request("Media part is not valid base64") from None
        return self._insert_object(req, bucket, resource, data, media_type)

    # -- resumable uploads ------------------------------------------------------------------

    def _start_upload(self, req: _Request, bucket: str) -> _Response:
        resource = _json_body(req)
        name = req.query.get("name") or resource.get("name")
        if not isinstance(name, str):
            raise _bad_request("Required: object name (the 'name' parameter)", "required")
        _check_object_name(name)
        conditions = _Conditions.parse(req.query)
        content_type = (
            resource.get("contentType")
            or req.header("x-upload-content-type")
            or "application/octet-stream"
        )
        upload = _Upload(uuid.uuid4().hex, bucket, name, str(content_type), resource, conditions)
        declared = req.header("x-upload-content-length")
        if declared and declared.isdigit():
            upload.total = int(declared)
        with self._lock:
            # Checked here to fail fast, and again when the last byte arrives.
            conditions.check(self._bucket(bucket).objects.get(name))
            self._uploads[upload.upload_id] = upload
        location = (
            f"{req.base_url}/upload/storage/v1/b/{_quote_name(bucket)}/o"
            f"?uploadType=resumable&name={_quote_name(name)}&upload_id={upload.upload_id}"
        )
        return _Response(
            200, headers=[("Location", location), ("X-GUploader-UploadID", upload.upload_id)]
        )

    def _cancel_upload(self, upload_id: str) -> _Response:
        with self._lock:
            if self._uploads.pop(upload_id, None) is None:
                raise GcsError(404, f"No such upload session: {upload_id}", "notFound")
        # GCS answers a cancelled session with the non-standard 499.
        return _Response(499, reason="Client Closed Request")

    def _upload_chunk(self, req: _Request, upload_id: str) -> _Response:
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            raise GcsError(404, f"No such upload session: {upload_id}", "notFound")
        body = req.body
        # Per-session lock: chunks of one session are serialized, other requests are not.
        with upload.lock:
            if upload.result is not None:
                return _json_response(upload.result.resource(req.base_url))
            header = req.header("content-range")
            first: int | None
            total: int | None
            if header is None:
                first, total = 0, len(body)  # the whole object in one request
                last = len(body) - 1
            else:
                match = _CONTENT_RANGE_RE.match(header.strip())
                if match is None:
                    raise _bad_request(f"Malformed Content-Range: {header!r}")
                first_s, last_s, total_s = match.groups()
                first = int(first_s) if first_s is not None else None
                last = int(last_s) if last_s is not None else -1
                total = None if total_s == "*" else int(total_s)
            if first is not None and len(body):
                if last - first + 1 != len(body):
                    raise _bad_request(
                        f"Content-Range {header!r} does not match the {len(body)}-byte body"
                    )
                have = len(upload.data)
                if first > have:
                    raise _bad_request(
                        f"Upload chunk starts at byte {first} but only {have} bytes are persisted"
                    )
                fresh = memoryview(body)[have - first :]  # re-sent bytes are ignored
                if len(fresh):
                    upload.data += fresh
                    upload.md5.update(fresh)
                    upload.crc = crc32c(fresh, upload.crc)
            if total is not None:
                if upload.total is not None and upload.total != total:
                    raise _bad_request(f"Upload size changed from {upload.total} to {total} bytes")
                upload.total = total
            if upload.total is not None and len(upload.data) > upload.total:
                raise _bad_request(
                    f"Received {len(upload.data)} bytes, more than the declared {upload.total}"
                )
            if upload.total is None or len(upload.data) < upload.total:
                headers = []
                if upload.data:
                    headers.append(("Range", f"bytes=0-{len(upload.data) - 1}"))
                return _Response(308, headers=headers, reason="Resume Incomplete")
            hashes = (_b64(upload.md5.digest()), _crc_b64(upload.crc))
            try:
                obj = self._store(
                    req,
                    upload.bucket,
                    upload.resource,
                    bytes(upload.data),
                    upload.content_type,
                    hashes,
                    upload.conditions,
                    upload.name,
                )
            except GcsError as exc:
                if exc.status == 412:
                    # The session is spent: a later query must not find it half-done.
                    with self._lock:
                        self._uploads.pop(upload_id, None)
                raise
            upload.result = obj
            upload.data = bytearray()
        return _json_response(obj.resource(req.base_url))

    # -- patch, delete ----------------------------------------------------------------------

    def _patch_object(
        self, req: _Request, bucket: str, name: str, *, replace_all: bool
    ) -> _Response:
        body = _json_body(req)
        generation = _int_param(req.query, "generation")
        conditions = _Conditions.parse(req.query)
        with self._lock:
            obj = self._live(bucket, name, generation)
            conditions.check(obj)
            if replace_all:
                metadata, fields = self._client_fields(body)
                content_type = body.get("contentType") or "application/octet-stream"
            else:
                metadata = dict(obj.metadata)
                fields = dict(obj.fields)
                content_type = obj.content_type
                if "metadata" in body:
                    patch = body["metadata"]
                    if patch is None:
                        metadata = {}
                    elif isinstance(patch, dict):
                        for key, value in patch.items():
                            if value is None:
                                metadata.pop(str(key), None)
                            else:
                                metadata[str(key)] = str(value)
                    else:
                        raise _bad_request("Invalid value for metadata: must be an object")
                for key, value in body.items():
                    if key in _WRITABLE_OBJECT_FIELDS:
                        if value is None:
                            fields.pop(key, None)
                        else:
                            fields[key] = value
                if "contentType" in body:
                    content_type = body["contentType"] or "application/octet-stream"
            updated = replace(
                obj,
                metadata=metadata,
                fields=fields,
                content_type=str(content_type),
                metageneration=obj.metageneration + 1,
                updated=time.time(),
            )
            self._buckets[bucket].put(updated)
        return _json_response(updated.resource(req.base_url))

    def _delete_object(self, req: _Request, bucket: str, name: str) -> _Response:
        generation = _int_param(req.query, "generation")
        conditions = _Conditions.parse(req.query)
        with self._lock:
            obj = self._live(bucket, name, generation)
            conditions.check(obj)
            self._buckets[bucket].remove(name)
        return _Response(204)

    # -- compose, rewrite, move -------------------------------------------------------------

    def _compose(self, req: _Request, bucket: str, name: str) -> _Response:
        _check_object_name(name)
        body = _json_body(req)
        sources = body.get("sourceObjects")
        if not isinstance(sources, list) or not sources:
            raise _bad_request("Required: sourceObjects", "required")
        if len(sources) > _MAX_COMPOSE_SOURCES:
            raise _bad_request(
                f"The number of source objects must be at most {_MAX_COMPOSE_SOURCES}."
            )
        picked: list[_Object] = []
        with self._lock:
            for src in sources:
                if not isinstance(src, dict) or not isinstance(src.get("name"), str):
                    raise _bad_request("Each source object needs a name", "required")
                generation = src.get("generation")
                obj = self._live(bucket, src["name"], int(generation) if generation else None)
                wanted = (src.get("objectPreconditions") or {}).get("ifGenerationMatch")
                if wanted is not None and int(wanted) != obj.generation:
                    raise _precondition_failed()
                picked.append(obj)
        # Sources are immutable records: concatenate and hash outside the lock.
        data = b"".join(obj.data for obj in picked)
        crc = _crc_b64(crc32c(data))
        components = sum(obj.component_count or 1 for obj in picked)
        destination = body.get("destination") or {}
        if not isinstance(destination, dict):
            raise _bad_request("Invalid value for destination: must be an object")
        metadata, fields = self._client_fields(destination)
        content_type = str(destination.get("contentType") or "application/octet-stream")
        now = time.time()

        def build(generation: int, _current: _Object | None) -> _Object:
            # GCS gives composite objects a crc32c and a component count but no MD5.
            return _Object(
                bucket=bucket,
                name=name,
                data=data,
                generation=generation,
                metageneration=1,
                content_type=content_type,
                created=now,
                updated=now,
                md5=None,
                crc32c=crc,
                metadata=metadata,
                fields=fields,
                component_count=components,
            )

        obj = self._commit(bucket, name, _Conditions.parse(req.query), build)
        return _json_response(obj.resource(req.base_url))

    def _rewrite(
        self, req: _Request, sb: str, so: str, db: str, do: str, *, rewrite: bool
    ) -> _Response:
        _check_object_name(do)
        body = _json_body(req)
        source_generation = _int_param(req.query, "sourceGeneration")
        source_conditions = _Conditions.parse(req.query, "ifSource")
        conditions = _Conditions.parse(req.query)
        now = time.time()
        with self._lock:
            src = self._live(sb, so, source_generation)
            source_conditions.check(src)
            dest_bucket = self._bucket(db)
            current = dest_bucket.objects.get(do)
            conditions.check(current)
            if body:
                # A destination resource in the body replaces the source's metadata.
                metadata, fields = self._client_fields(body)
                content_type = str(body.get("contentType") or src.content_type)
            else:
                metadata, fields, content_type = (
                    dict(src.metadata),
                    dict(src.fields),
                    src.content_type,
                )
            obj = replace(
                src,
                bucket=db,
                name=do,
                generation=self._next_generation(),
                metageneration=1,
                created=now,
                updated=now,
                metadata=metadata,
                fields=fields,
                content_type=content_type,
            )
            dest_bucket.put(obj)
        resource = obj.resource(req.base_url)
        if not rewrite:
            return _json_response(resource)
        size = str(len(obj.data))
        return _json_response(
            {
                "kind": "storage#rewriteResponse",
                "totalBytesRewritten": size,
                "objectSize": size,
                "done": True,
                "resource": resource,
            }
        )

    def _move(self, req: _Request, bucket: str, src_name: str, dst_name: str) -> _Response:
        _check_object_name(dst_name)
        source_conditions = _Conditions.parse(req.query, "ifSource")
        conditions = _Conditions.parse(req.query)
        source_generation = _int_param(req.query, "sourceGeneration")
        now = time.time()
        with self._lock:
            src = self._live(bucket, src_name, source_generation)
            source_conditions.check(src)
            b = self._buckets[bucket]
            conditions.check(b.objects.get(dst_name))
            obj = replace(
                src,
                name=dst_name,
                generation=self._next_generation(),
                metageneration=1,
                updated=now,
            )
            b.remove(src_name)
            b.put(obj)
        return _json_response(obj.resource(req.base_url))

    # -- batch ------------------------------------------------------------------------------

    def _batch(self, req: _Request) -> _Response:
        mime, boundary = _content_type_param(req.header("content-type"), "boundary")
        if mime != "multipart/mixed" or not boundary:
            raise _bad_request("A batch request must be multipart/mixed with a boundary")
        out_boundary = f"batch_{uuid.uuid4().hex}"
        chunks: list[bytes] = []
        for part_headers, payload in _split_multipart(req.body, boundary):
            content_id = part_headers.get("content-id", "").strip().strip("<>")
            sub = self._batch_subrequest(req, payload)
            reason = sub.reason or _reason(sub.status)
            lines = [f"HTTP/1.1 {sub.status} {reason}"]
            lines += [f"{k}: {v}" for k, v in sub.headers]
            lines.append(f"Content-Length: {len(sub.body)}")
            head = [
                f"--{out_boundary}",
                "Content-Type: application/http",
                f"Content-ID: <response-{content_id}>",
                "",
                *lines,
                "",
                "",
            ]
            chunks.append("\r\n".join(head).encode("utf-8") + sub.body + b"\r\n")
        chunks.append(f"--{out_boundary}--\r\n".encode())
        # No quotes around the boundary: gcsfs splits the header value on its first '='.
        return _Response(
            200,
            b"".join(chunks),
            [("Content-Type", f"multipart/mixed; boundary={out_boundary}")],
        )

    def _batch_subrequest(self, outer: _Request, payload: bytes) -> _Response:
        try:
            eol = b"\r\n" if payload.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
            head, sep, body = payload.partition(eol + eol)
            lines = head.split(eol)
            method, target, _version = lines[0].decode("latin-1").split(" ", 2)
            headers = _split_headers(eol.join(lines[1:]), eol)
            length = headers.get("content-length")
            if length is not None and length.isdigit():
                body = body[: int(length)]
            elif not sep:
                body = b""
            parts = urlsplit(target)
            sub = _Request(
                method=method.upper(),
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers=headers,
                body=body,
                base_url=outer.base_url,
            )
        except (ValueError, IndexError):
            return GcsError(400, "Malformed request inside the batch", "invalid").response()
        if sub.path.rstrip("/").startswith("/batch"):
            return GcsError(400, "Batch requests cannot be nested", "invalid").response()
        return self.handle(sub)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Closed Request" if status == 499 else "Unknown"


# --------------------------------------------------------------------------------------------
# HTTP server


class _Disconnected(Exception):
    """The client went away before sending the whole request."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "mlflow-bucket-gcs-emulator"
    sys_version = ""
    disable_nagle_algorithm = True  # one write per response, but no delayed-ACK stalls
    timeout = 600  # drop idle keep-alive connections eventually

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        server = cast(GcsEmulatorServer, self.server)
        try:
            body = self._read_body()
        except _Disconnected:
            self.close_connection = True
            return
        except ValueError as exc:
            self.close_connection = True  # the body's extent is unknown: cannot keep alive
            self._write(GcsError(400, f"Malformed request: {exc}", "invalid").response())
            return
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        host = headers.get("host") or f"{server.server_name}:{server.server_port}"
        req = _Request(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            base_url=f"http://{host}",
        )
        self._write(server.state.handle(req))

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        length = int(raw)  # ValueError -> 400
        if length < 0:
            raise ValueError("negative Content-Length")
        data = self.rfile.read(length)
        if len(data) < length:
            raise _Disconnected
        return data

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _Disconnected
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537).strip():
                    pass  # trailers
                return bytes(out)
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                raise _Disconnected
            out += chunk[:size]

    def _write(self, resp: _Response) -> None:
        reason = resp.reason or _reason(resp.status)
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Date: {self.date_time_string()}",
            f"Server: {self.server_version}",
            *(f"{k}: {v}" for k, v in resp.headers),
        ]
        body = resp.body
        if resp.status in (204, 304):
            body = b""  # these carry neither a body nor a Content-Length
        else:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        if self.command == "HEAD":
            body = b""
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            self.wfile.write(head + body)  # one send: headers and body together
        except OSError:
            self.close_connection = True  # client gone; nothing to tell it
            return
        if cast(GcsEmulatorServer, self.server).verbose:
            self.log_request(resp.status, len(body))

    def log_message(self, format: str, *args: Any) -> None:
        if cast(GcsEmulatorServer, self.server).verbose:
            super().log_message(format, *args)


class GcsEmulatorServer(ThreadingHTTPServer):
    """A thread per connection, daemonic; a deep listen backlog for bursts of clients."""

    daemon_threads = True
    block_on_close = False  # shutdown must not wait for clients holding connections open
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        state: GcsState | None = None,
        *,
        verbose: bool = False,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state or GcsState()
        self.verbose = verbose
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a client that vanished mid-request is routine, not an error
        super().handle_error(request, client_address)

    @property
    def endpoint(self) -> str:
        return _endpoint(self.server_name, self.server_port)


def _connect_host(host: str) -> str:
    """Where a client reaches a server bound to ``host`` (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def _endpoint(host: str, port: int) -> str:
    host = _connect_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(
    host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False
) -> GcsEmulatorServer:
    """A bound, not yet serving, emulator server (``port=0`` binds a free port)."""
    return GcsEmulatorServer((host, port), verbose=verbose)


def serve(host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
    """Run the emulator in this process until interrupted (SIGINT or SIGTERM)."""
    server = make_server(host, port, verbose=verbose)

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, stop)
    announce_ready(server.server_name, server.server_port)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {_MODULE}", description="In-memory GCS JSON-API emulator for tests."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit when the spawning process dies (used by GcsEmulator)",
    )
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        exit_with_parent()
    serve(args.host, args.port, verbose=args.verbose)


# --------------------------------------------------------------------------------------------
# client-side handles


class _Controls:
    """Admin calls shared by the subprocess and in-thread handles."""

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def _admin(self, method: str, path: str, body: JsonDict | None = None) -> tuple[int, Any]:
        split = urlsplit(self.endpoint)
        conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=30)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def reset(self) -> None:
        """Delete every bucket, object and upload session."""
        status, doc = self._admin("POST", "/_emulator/reset")
        if status != 200:
            raise RuntimeError(f"GCS emulator reset failed: {status} {doc}")

    def create_bucket(self, name: str) -> JsonDict:
        """Create bucket ``name`` (over HTTP, like a client would); returns its resource."""
        status, doc = self._admin("POST", "/storage/v1/b?project=test", {"name": name})
        if status != 200:
            raise RuntimeError(f"creating bucket {name!r} failed: {status} {doc}")
        return cast(JsonDict, doc)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class GcsEmulator(_Controls):
    """The emulator in a subprocess (``python -m mlflow_bucket.testing.gcs_emulator``).

    A separate process shares no GIL with the code under test, so concurrency in tests is
    real. ``port=0`` lets the child bind a free port and report it (no free-port race).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout: float = 20.0,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        args = ["--host", host, "--port", str(port), "--exit-with-parent"]
        if verbose:
            args.append("--verbose")
        self._process = ServerProcess(_MODULE, args, name="GCS emulator")

    @property
    def endpoint(self) -> str:
        if not self._process.running or self._process.port is None:
            raise RuntimeError("GCS emulator is not running: call start() first")
        return _endpoint(self.host, self._process.port)

    @property
    def running(self) -> bool:
        return self._process.running

    def start(self) -> Self:
        """Spawn the server and return once it answers HTTP (``ServerStartError`` if not)."""
        host = _connect_host(self.host)
        url_host = "[{host}]" if ":" in host else "{host}"
        # The child announces the port it bound, then the health URL must answer.
        self._process.start(
            timeout=self.startup_timeout,
            host=host,
            ready_url=f"http://{url_host}:{{port}}/_emulator/health",
        )
        return self

    def stop(self) -> None:
        self._process.stop()

    def stderr_tail(self) -> str:
        """The end of the child's stderr (tracebacks of 500s are logged there)."""
        return self._process.stderr_tail()


class ThreadedGcsEmulator(_Controls):
    """The emulator on a background thread of this process, for debugging.

    Shares this process's GIL, so it understates concurrency; tests use :class:`GcsEmulator`.
    ``state`` gives direct access to the stored buckets.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self._server: GcsEmulatorServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> GcsState:
        if self._server is None:
            raise RuntimeError("GCS emulator is not running: call start() first")
        return self._server.state

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("GCS emulator is not running: call start() first")
        return self._server.endpoint

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("GCS emulator already started")
        self._server = make_server(self.host, self.port, verbose=self.verbose)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="gcs-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


if __name__ == "__main__":
    main()
