"""An in-process object store: the engine's reference backend for unit tests.

Buckets are shared by name within a process (``memory://name/root`` opened
twice sees the same objects), like fsspec's memory filesystem.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .base import ListPage, ObjectInfo, ObjectStore
from .errors import AlreadyExists, NotFound


@dataclass
class _Object:
    data: bytes
    info: ObjectInfo


class _Bucket:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, _Object] = {}
        self.names: list[str] = []  # sorted, for listing by offset


_BUCKETS: dict[str, _Bucket] = {}
_BUCKETS_LOCK = threading.Lock()
_VERSIONS = itertools.count(1)


def _bucket(name: str) -> _Bucket:
    with _BUCKETS_LOCK:
        return _BUCKETS.setdefault(name, _Bucket())


def reset_memory_buckets() -> None:
    """Forget every memory bucket (tests call this between cases)."""
    with _BUCKETS_LOCK:
        _BUCKETS.clear()


class MemoryStore(ObjectStore):
    scheme = "memory"

    def __init__(self, bucket: str, root: str = "", **kwargs: object) -> None:
        super().__init__(bucket, root, **kwargs)  # type: ignore[arg-type]
        self._b = _bucket(bucket)

    def _store(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        """Insert under the bucket lock, which the caller holds."""
        name = self._full(key)
        info = ObjectInfo(
            key=key,
            size=len(data),
            version=str(next(_VERSIONS)),
            updated=datetime.now(UTC),
            metadata=dict(metadata),
        )
        if name not in self._b.objects:
            bisect.insort(self._b.names, name)
        self._b.objects[name] = _Object(bytes(data), info)
        return info

    def _put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        with self._b.lock:
            return self._store(key, data, metadata)

    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        with self._b.lock:
            if self._full(key) in self._b.objects:
                raise AlreadyExists("object exists", operation="create", url=self.url(key))
            return self._store(key, data, metadata)

    def _lookup(self, key: str, operation: str) -> _Object:
        obj = self._b.objects.get(self._full(key))
        if obj is None:
            raise NotFound("no such object", operation=operation, url=self.url(key))
        return obj

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        with self._b.lock:
            data = self._lookup(key, "get").data
        return data[start:end]

    def _head(self, key: str) -> ObjectInfo:
        with self._b.lock:
            return self._lookup(key, "head").info

    def _list_page(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        max_results: int,
        token: str | None,
    ) -> ListPage:
        full_prefix = self._full(prefix) if prefix else (f"{self.root}/" if self.root else "")
        after = token or (self._full(start_after) if start_after else None)
        with self._b.lock:
            names = self._b.names
            i = (
                bisect.bisect_right(names, after)
                if after
                else bisect.bisect_left(names, full_prefix)
            )
            objects: list[ObjectInfo] = []
            prefixes: list[str] = []
            last: str | None = None
            while i < len(names) and len(objects) + len(prefixes) < max_results:
                name = names[i]
                if not name.startswith(full_prefix):
                    if name > full_prefix:
                        break
                    i += 1
                    continue
                rest = name[len(full_prefix) :]
                cut = rest.find(delimiter) if delimiter else -1
                if cut >= 0:
                    rolled = full_prefix + rest[: cut + len(delimiter or "")]
                    prefixes.append(self._relative(rolled))
                    # Resume past every key under the rolled-up prefix.
                    last = rolled + "\U0010ffff"
                    i = bisect.bisect_left(names, last)
                    continue
                objects.append(self._b.objects[name].info)
                last = name
                i += 1
            more = i < len(names) and names[i].startswith(full_prefix)
        return ListPage(objects, prefixes, last if more else None)

    def _delete(self, key: str) -> None:
        name = self._full(key)
        with self._b.lock:
            if self._b.objects.pop(name, None) is not None:
                self._b.names.remove(name)
