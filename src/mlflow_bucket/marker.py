"""The format marker: one object at a store's root saying what it holds.

Written once, with create-if-absent, by the first process that opens an
empty store; every later open reads it and refuses a format it does not
know, with a message naming the object and both versions.
"""

from __future__ import annotations

import json
from typing import Any

from . import __version__
from .storage import AlreadyExists, NotFound, ObjectStore, PermissionDenied

MARKER_KEY = "mlflow-bucket.json"
FORMAT_NAME = "mlflow-bucket"
FORMAT_VERSION = 1


class UnknownFormat(RuntimeError):
    """The store holds something this version cannot read."""


def _check(store: ObjectStore, data: bytes) -> dict[str, Any]:
    url = store.url(MARKER_KEY)
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise UnknownFormat(f"{url} is not a format marker (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise UnknownFormat(
            f"{url} does not mark an mlflow-bucket store (format={doc.get('format')!r}): "
            "point the URI at the store's root, or at an empty prefix"
            if isinstance(doc, dict)
            else f"{url} is not a format marker"
        )
    version = doc.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UnknownFormat(
            f"{url} says format version {version!r}; this mlflow-bucket ({__version__}) reads "
            f"version {FORMAT_VERSION} and older: upgrade mlflow-bucket"
        )
    return doc


def ensure_marker(store: ObjectStore) -> dict[str, Any]:
    """Read the marker, creating it if the store has none; raise UnknownFormat."""
    try:
        return _check(store, store.get(MARKER_KEY))
    except NotFound:
        pass
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created_by": __version__}
    try:
        store.create(MARKER_KEY, json.dumps(doc, indent=2).encode())
    except AlreadyExists:
        return _check(store, store.get(MARKER_KEY))
    except PermissionDenied:
        # A reader of a store nobody has written yet: nothing to check.
        return doc
    return doc


def read_marker(store: ObjectStore) -> dict[str, Any] | None:
    """The store's marker, None if it has none yet; raise UnknownFormat. Writes nothing."""
    try:
        data = store.get(MARKER_KEY)
    except NotFound:
        return None
    return _check(store, data)
