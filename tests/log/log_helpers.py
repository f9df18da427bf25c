"""Helpers for the log's tests: stores that count or fail, and a test fold."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlflow_bucket.log import Log
from mlflow_bucket.storage import ObjectStore, PermissionDenied, TransientError
from mlflow_bucket.storage.base import ListPage, ObjectInfo


class WrappedStore(ObjectStore):
    """Delegates every primitive to a real store; subclasses observe or interfere.

    Only the single-attempt primitives are wrapped, so validation, retries
    and parallelism are the real ObjectStore code.
    """

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner.bucket, "", retry=inner.retry, concurrency=inner.concurrency)
        self.inner = inner
        self.scheme = inner.scheme

    @property
    def uri(self) -> str:
        return self.inner.uri

    @property
    def endpoint(self) -> str | None:
        return self.inner.endpoint

    def url(self, key: str) -> str:
        return self.inner.url(key)

    def before(self, op: str, key: str) -> None:
        """Called before every primitive."""

    def _put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        self.before("put", key)
        return self.inner._put(key, data, metadata)

    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        self.before("create", key)
        return self.inner._create(key, data, metadata)

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        self.before("get", key)
        return self.inner._get(key, start, end)

    def _head(self, key: str) -> ObjectInfo:
        self.before("head", key)
        return self.inner._head(key)

    def _list_page(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        max_results: int,
        token: str | None,
    ) -> ListPage:
        self.before("list", prefix)
        return self.inner._list_page(prefix, delimiter, start_after, max_results, token)

    def _delete(self, key: str) -> None:
        self.before("delete", key)
        self.inner._delete(key)

    def _server_time(self) -> datetime:
        self.before("time", "")
        return self.inner._server_time()


class CountingStore(WrappedStore):
    """Counts primitive calls (one per HTTP request on GCS and S3)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def before(self, op: str, key: str) -> None:
        with self._count_lock:
            self.counts[op] += 1

    def reset(self) -> Counter[str]:
        with self._count_lock:
            out, self.counts = self.counts, Counter()
        return out


class FlakyStore(WrappedStore):
    """A store that is unreachable while ``down`` is set."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.down = threading.Event()
        self.refused = 0

    def before(self, op: str, key: str) -> None:
        if self.down.is_set():
            self.refused += 1
            raise TransientError("store unreachable (test)", operation=op, url=self.url(key))


class DenyingStore(WrappedStore):
    """A store whose credentials may read but not create: a permanent refusal (HTTP 403)."""

    def before(self, op: str, key: str) -> None:
        if op == "create":
            raise PermissionDenied(
                "may not create (test)", operation=op, url=self.url(key), status=403
            )


def fold(state: dict[str, Any], seq: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The test fold: registers by key (later in log order wins), first claim of a name wins.

    Deterministic and idempotent: replaying a batch changes nothing.
    """
    for entry in entries:
        if "k" in entry:
            state["values"][entry["k"]] = entry["v"]
        if "claim" in entry:
            state["claims"].setdefault(entry["claim"], entry["by"])
    state["upto"] = max(state["upto"], seq)
    return state


def initial() -> dict[str, Any]:
    return {"values": {}, "claims": {}, "upto": 0}


def fold_all(log: Log) -> dict[str, Any]:
    state = initial()
    for seq, entries in log.read(0):
        state = fold(state, seq, entries)
    return state


def fold_upto(log: Log, upto: int) -> dict[str, Any]:
    """The fold of log objects 1..upto: the state a checkpoint at ``upto`` holds."""
    state = initial()
    for record in log.records(0, upto=upto):
        state = fold(state, record.seq, record.entries)
    return state
