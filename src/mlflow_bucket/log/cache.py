"""A local disk cache of immutable objects.

Log objects, checkpoints and side objects never change once written, so a
cached copy never needs invalidation. Entries are keyed by the object's key
*and* its version (GCS generation, S3 ETag...) as the listing reported it:
if a bucket is wiped and refilled under the same URI, a new object at an
old key has a new version and misses the cache instead of aliasing it.

The cache is best effort: any local I/O error degrades to a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from mlflow_bucket.storage import ObjectStore

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 30
# Re-scan the folder after this many writes even below the bound: other
# processes sharing the folder grow it too.
_RESCAN_EVERY = 500
# Bumping mtime on every hit would be a syscall per read; once a minute is
# enough for LRU-ish eviction.
_TOUCH_AFTER = 60.0
_TMP = ".tmp"


def _platform_dir(kind: str) -> Path:
    """The per-user folder for ``kind`` ("cache" or "state") of this platform."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "mlflow-bucket" / kind.capitalize()
    if sys.platform == "darwin":
        sub = "Caches" if kind == "cache" else "Application Support"
        return home / "Library" / sub / "mlflow-bucket"
    if kind == "cache":
        return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "mlflow-bucket"
    return Path(os.environ.get("XDG_STATE_HOME") or home / ".local" / "state") / "mlflow-bucket"


def default_cache_dir() -> Path:
    """``$MLFLOW_BUCKET_CACHE_DIR``, else the platform's user cache folder."""
    env = os.environ.get("MLFLOW_BUCKET_CACHE_DIR")
    return Path(env).expanduser() if env else _platform_dir("cache") / "objects"


def store_id(store: ObjectStore) -> str:
    """A short stable name for a store, so several stores never share a folder.

    A hash of its identity (URI and endpoint, ``ObjectStore.identity``):
    ``s3://twin/team`` on two services is two stores, whose cached objects
    (an emulator's generation numbers repeat) and spooled batches must never
    mix. A store on its scheme's default endpoint keeps the name earlier
    versions gave it, a hash of the URI alone (``legacy_store_id``).
    """
    return _short_hash(store.identity)


def legacy_store_id(store: ObjectStore) -> str:
    """The name versions before the endpoint was part of it gave the store:
    a hash of the URI alone (the same as ``store_id`` on a default endpoint)."""
    return _short_hash(store.uri)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ObjectCache:
    """Immutable objects on local disk, bounded in size, evicted oldest-used first."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None  # unknown until the first scan
        self._writes = 0
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_store(
        cls,
        store: ObjectStore,
        directory: str | os.PathLike[str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> ObjectCache:
        """The cache of one store: a sub-folder named by a hash of its identity."""
        base = Path(directory) if directory is not None else default_cache_dir()
        return cls(base / store_id(store), max_bytes)

    def _path(self, key: str, version: str) -> Path:
        # Hashed names: keys may be longer or hold characters a local file
        # system refuses; the version makes a rewritten key a new entry.
        digest = hashlib.sha256(f"{key}\x00{version}".encode()).hexdigest()
        return self.directory / digest[:2] / digest

    def get(self, key: str, version: str) -> bytes | None:
        path = self._path(key, version)
        try:
            data = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        self.hits += 1
        with contextlib.suppress(OSError):
            now = time.time()
            if now - path.stat().st_mtime > _TOUCH_AFTER:
                os.utime(path, (now, now))
        return data

    def contains(self, key: str, version: str) -> bool:
        """Whether the entry is cached (no read, no hit counted)."""
        return self._path(key, version).is_file()

    def put(self, key: str, version: str, data: bytes) -> None:
        path = self._path(key, version)
        tmp_dir = self.directory / _TMP
        tmp = tmp_dir / uuid.uuid4().hex
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            # Atomic: a reader (maybe another process) sees all of it or none.
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cache write of %s failed: %s", key, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        with self._lock:
            self._writes += 1
            if self._size is not None:
                self._size += len(data)
            due = (
                self._size is None
                or self._size > self.max_bytes
                or self._writes % _RESCAN_EVERY == 0
            )
        if due:
            self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        out: list[tuple[float, int, Path]] = []
        try:
            subdirs = [d for d in os.scandir(self.directory) if d.name != _TMP and d.is_dir()]
        except OSError:
            return out
        for sub in subdirs:
            with contextlib.suppress(OSError):
                for entry in os.scandir(sub.path):
                    with contextlib.suppress(OSError):
                        st = entry.stat()
                        out.append((st.st_mtime, st.st_size, Path(entry.path)))
        return out

    def _evict(self) -> None:
        """Bring the folder back under 80% of the bound, oldest-used first."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        if total > self.max_bytes:
            target = int(self.max_bytes * 0.8)
            for _, size, path in sorted(entries, key=lambda e: e[0]):
                if total <= target:
                    break
                with contextlib.suppress(OSError):
                    path.unlink()
                    total -= size
        with self._lock:
            self._size = total

    def clear(self) -> None:
        for _, _, path in self._entries():
            with contextlib.suppress(OSError):
                path.unlink()
        with self._lock:
            self._size = 0
