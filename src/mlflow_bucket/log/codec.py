"""Encoding of the log's objects: gzip-compressed JSON with a format header.

Every object the log writes (log batches, checkpoints, side objects) is one
JSON document, compressed with gzip, whose top level names its format and
version::

    {"format": "mlflow-bucket/log", "version": 1, ...}

so ``gunzip | jq`` reads any of them and a reader can tell a foreign or
damaged object from one written by a newer release (docs/format.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import warnings
import zlib
from collections.abc import Mapping
from typing import Any

from ..storage.errors import StorageError

# The on-bucket format version this code writes and the newest it reads.
FORMAT_VERSION = 1

LOG = "mlflow-bucket/log"
CHECKPOINT = "mlflow-bucket/checkpoint"
SIDE = "mlflow-bucket/side"
FORMATS = (LOG, CHECKPOINT, SIDE)

# Level 6 is zlib's default: level 9 costs far more CPU for a few percent.
_LEVEL = 6


class CorruptObject(ValueError):
    """An object that is not a valid document of the expected format."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: not a valid mlflow-bucket object: {reason}")


class FormatTooNew(StorageError, ValueError):
    """An object written by a newer release, in a format this code cannot read.

    A StorageError (the bucket's state stops the call), so that it reaches
    MLflow as an MlflowException (INVALID_STATE, as a newer format marker
    does) and the command line as one line; a ValueError as it always was.
    """

    def __init__(self, where: str, found: int, known: int) -> None:
        self.where = where
        self.found = found
        self.known = known
        super().__init__(
            f"written in on-bucket format version {found}, but this "
            f"mlflow-bucket reads versions up to {known}; upgrade mlflow-bucket",
            url=where,
        )


class CorruptObjectWarning(UserWarning):
    """A damaged or foreign object was skipped or ignored; the message names its URL."""


def warn_corrupt(where: str, reason: str) -> None:
    # stacklevel 3: point at the caller of the reader, not at this helper.
    warnings.warn(
        f"skipping {where}: not a valid mlflow-bucket object ({reason})",
        CorruptObjectWarning,
        stacklevel=3,
    )


def warn_object(where: str, reason: str) -> None:
    """A CorruptObjectWarning about an object that may be valid but is not
    read as it stands (past a gap, say): ``reason`` says what happens."""
    warnings.warn(f"{where}: {reason}", CorruptObjectWarning, stacklevel=3)


def canonical_json(value: Any) -> bytes:
    """The one serialization: sorted keys and no spaces, so equal values give equal bytes.

    NaN and the infinities are written as JavaScript literals (NaN,
    Infinity, -Infinity), as Python's json module does: metric values may
    be any float.
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-serializable: {exc}") from exc


def encode(fmt: str, body: Mapping[str, Any]) -> bytes:
    """A complete object of format ``fmt`` holding ``body``'s fields."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown object format {fmt!r}")
    doc = {**body, "format": fmt, "version": FORMAT_VERSION}
    # mtime=0: the same document always compresses to the same bytes, so
    # racing writers of one checkpoint write identical objects.
    return gzip.compress(canonical_json(doc), compresslevel=_LEVEL, mtime=0)


def decode(fmt: str, data: bytes, where: str) -> dict[str, Any]:
    """The document in ``data``; ``where`` (the object's URL) names it in errors.

    Raises CorruptObject for anything that is not a document of format
    ``fmt`` (bad compression, bad JSON, a foreign format or a version that
    never existed) and FormatTooNew for a version newer than this code.
    """
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptObject(where, f"bad compression: {exc}") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptObject(where, f"bad JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CorruptObject(where, "the document is not a JSON object")
    found_fmt = doc.get("format")
    if found_fmt != fmt:
        raise CorruptObject(where, f"format {found_fmt!r}, expected {fmt!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CorruptObject(where, f"unknown format version {version!r}")
    if version > FORMAT_VERSION:
        raise FormatTooNew(where, version, FORMAT_VERSION)
    return doc


# -- the three documents ------------------------------------------------------


def encode_batch(entries: list[dict[str, Any]], batches: list[str]) -> bytes:
    """A log object: one atomic batch of entries, with the ids of the writes in it."""
    return encode(LOG, {"batches": batches, "entries": entries})


def decode_batch(data: bytes, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    doc = decode(LOG, data, where)
    entries = doc.get("entries")
    batches = doc.get("batches", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CorruptObject(where, "'entries' is not a list of objects")
    if not isinstance(batches, list) or not all(isinstance(b, str) for b in batches):
        raise CorruptObject(where, "'batches' is not a list of strings")
    return entries, batches


def encode_checkpoint(seq: int, state: Any, side: list[str]) -> bytes:
    return encode(CHECKPOINT, {"seq": seq, "side": side, "state": state})


def decode_checkpoint(data: bytes, where: str) -> tuple[int, Any, list[str]]:
    doc = decode(CHECKPOINT, data, where)
    seq = doc.get("seq")
    side = doc.get("side", [])
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise CorruptObject(where, f"bad 'seq' {seq!r}")
    if "state" not in doc:
        raise CorruptObject(where, "no 'state'")
    if not isinstance(side, list) or not all(isinstance(s, str) for s in side):
        raise CorruptObject(where, "'side' is not a list of strings")
    return seq, doc["state"], side


def encode_side(data: Any) -> bytes:
    return encode(SIDE, {"data": data})


def encode_side_with_ref(data: Any) -> tuple[str, bytes]:
    """(reference, object) of a side object from one serialization of ``data``.

    The same bytes as ``encode_side`` (the document's keys sort as data,
    format, version), and the reference is the SHA-256 of the data's
    canonical JSON: a checkpoint of many runs serializes each history once,
    not twice.
    """
    raw = canonical_json(data)
    doc = b"".join(
        (b'{"data":', raw, b',"format":"', SIDE.encode(), b'","version":', b"%d}" % FORMAT_VERSION)
    )
    return hashlib.sha256(raw).hexdigest(), gzip.compress(doc, compresslevel=_LEVEL, mtime=0)


def decode_side(data: bytes, where: str) -> Any:
    doc = decode(SIDE, data, where)
    if "data" not in doc:
        raise CorruptObject(where, "no 'data'")
    return doc["data"]
