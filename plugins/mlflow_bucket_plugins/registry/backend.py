"""The registry's log view, one per tracking ``Backend`` (so one per store URI and process).

The registry lives in the same store as the runs, beside the tracking
logs, and shares the tracking Backend's object store, cache, compaction
settings, clock and refresh policy. The tracking Backend does not know
about it: the view is attached here, lazily, and dropped with its Backend
(``forget_backends``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow_bucket.log import Log, LogView
from mlflow_bucket.log.codec import warn_corrupt

from ..tracking.backend import Backend, backend_for
from .fold import (
    REGISTRY_LOG,
    Entry,
    State,
    dump_registry,
    fold_registry,
    load_registry,
    new_registry_state,
)

log = logging.getLogger(__name__)


class RegistryBackend:
    """The registry's state for one store, refreshed like the tracking views."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        registry_log = Log(backend.store, REGISTRY_LOG, cache=backend.cache)
        warned: set[str] = set()

        def report(seq: int, index: int, reason: str) -> None:
            # Once per object and process, as for an object that does not decode.
            where = registry_log.url(registry_log.key(seq))
            if where not in warned:
                warned.add(where)
                log.warning("skipping part of %s: entry %d: %s", where, index, reason)
                warn_corrupt(where, f"entry {index}: {reason}")

        def fold(state: State, seq: int, entries: list[Entry]) -> State:
            return fold_registry(state, seq, entries, report)

        self.view: LogView[State] = LogView(
            registry_log,
            fold,
            new_registry_state,
            dump=dump_registry,
            load=load_registry,
            compaction=backend.compaction,
        )

    @contextmanager
    def state(self, fresh: bool = False) -> Iterator[State]:
        """The registry's state, under the view's lock (the fold mutates it in place).

        Not fresh: at most one listing per refresh interval, and no caller
        waits long for it (the tracking Backend's policy). Fresh: everything
        in the log when the call began.
        """
        self.backend._refresh(self.view, fresh)
        with self.view.lock:
            yield self.view.state

    def append(self, entry: Entry) -> int:
        """Append one entry synchronously; the state includes it on return."""
        return self.view.append([entry])

    def now_ms(self) -> int:
        """The store's time, as the tracking store stamps its entries."""
        return self.backend.now_ms()


_REGISTRIES: weakref.WeakKeyDictionary[Backend, RegistryBackend] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def registry_for(uri: str) -> RegistryBackend:
    """The process's registry for ``uri`` (on the process's tracking Backend for it)."""
    backend = backend_for(uri)
    with _LOCK:
        registry = _REGISTRIES.get(backend)
        if registry is None:
            registry = _REGISTRIES[backend] = RegistryBackend(backend)
        return registry


def registry_state_copy(uri: str) -> Any:
    """A deep copy of the current state (tests and tools)."""
    import copy

    with registry_for(uri).state(fresh=True) as state:
        return copy.deepcopy(state)
