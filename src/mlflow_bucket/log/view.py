"""An in-memory view of a log for long-lived processes (a UI server, say).

The view holds the folded state and the number it is at; ``refresh``
costs one LIST when nothing is new, and is rate-limited to one per
``max_age`` seconds however many threads ask.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic

from .checkpoint import Base, Checkpoints, Compaction, FoldFn, S, SideObjects
from .sequence import Log, LogTruncated

log = logging.getLogger(__name__)


class LogView(Generic[S]):
    """The state of ``log`` under ``fold``, kept in memory and refreshed on demand.

    Thread-safe. The fold runs under ``self.lock``; a fold that mutates the
    state in place rather than returning a new one needs readers to hold
    that lock too while they look at ``state``. Network requests (listing,
    fetching, checkpointing) happen outside that lock, one refresher at a
    time, so readers never wait on the bucket for a state they already
    have.
    """

    def __init__(
        self,
        log: Log,
        fold: FoldFn[S],
        initial: S | Callable[[], S],
        *,
        dump: Callable[[S, SideObjects], Any] | None = None,
        load: Callable[[Any], S] | None = None,
        compaction: Compaction | None = None,
        clock: Callable[[], float] = time.monotonic,
        adopt: Callable[[S, Any], None] | None = None,
    ) -> None:
        """``adopt(state, doc)``: once a checkpoint of the state is written,
        make the state look like ``doc`` (what ``dump`` made of it), in
        place, as a cold reader would load it: data moved into side objects
        need not stay in memory, nor be dumped again by the next checkpoint.
        """
        self.log = log
        self._adopt = adopt
        self._dumped: Any = None
        if dump is not None and adopt is not None:
            dump = self._keeping(dump)
        self.checkpoints = Checkpoints(
            log, fold, initial, dump=dump, load=load, compaction=compaction
        )
        self.lock = threading.RLock()
        # Held across a refresh's requests: one refresher at a time. Only
        # the refresher changes the state, so while it holds this lock the
        # state is stable for its checkpoint's dump without ``lock``.
        self._refreshing = threading.RLock()
        self._clock = clock
        self._state: S | None = None
        self._seq = -1  # not loaded yet
        self._base = Base(0, frozenset())
        self._checked: float | None = None
        self._tried = 0  # the number at which compaction was last attempted

    @property
    def seq(self) -> int:
        """The number of the last log object folded in (-1 before the first refresh)."""
        return self._seq

    @property
    def state(self) -> S:
        """The state as of the last refresh (loading it on first use)."""
        if self._seq < 0:
            return self.refresh(max_age=float("inf"))
        return self._state  # type: ignore[return-value]

    def due(self, max_age: float) -> bool:
        """Whether ``refresh(max_age)`` would list the log now."""
        checked = self._checked
        return self._seq < 0 or checked is None or self._clock() - checked >= max_age

    def refresh(self, max_age: float = 1.0) -> S:
        """Apply new log objects, listing at most once per ``max_age`` seconds.

        ``max_age=0``: the state includes every log object that existed when
        the call began.
        """
        started = self._clock()
        with self._refreshing:
            # A refresh that began after this call (while it waited) will do.
            if self._seq >= 0 and self._checked is not None and started - self._checked < max_age:
                return self._state  # type: ignore[return-value]
            if self._seq < 0:
                self._cold()
            else:
                try:
                    self._catch_up()
                except LogTruncated:
                    # gc deleted objects we had not read: a newer checkpoint covers them.
                    self._cold()
            self._checked = started
            self._compact()
            return self._state  # type: ignore[return-value]

    def append(self, entries: Iterable[Mapping[str, Any]]) -> int:
        """Append a batch and refresh up to it, so the caller sees its own write."""
        seq = self.log.append(entries)
        if self._seq < seq:
            self.refresh(max_age=0)
        return seq

    def _cold(self) -> None:
        seq, state, base = self.checkpoints.read()
        with self.lock:
            self._state, self._seq, self._base = state, seq, base

    def _catch_up(self) -> None:
        fold = self.checkpoints.fold
        # Fetched first, folded after: readers wait for the fold, not the bucket.
        records = list(self.log.records(self._seq))
        with self.lock:
            for record in records:
                self._state = fold(self._state, record.seq, record.entries)  # type: ignore[arg-type]
                self._seq = record.seq

    def _keeping(self, dump: Callable[[S, SideObjects], Any]) -> Callable[[S, SideObjects], Any]:
        def keep(state: S, side: SideObjects) -> Any:
            self._dumped = dump(state, side)
            return self._dumped

        return keep

    def _compact(self, threshold: int | None = None) -> bool:
        if threshold is None:
            threshold = self.checkpoints.compaction.threshold
        if threshold <= 0 or self._seq - max(self._base.newest_listed, self._tried) < threshold:
            return False
        # Whatever happens (someone else checkpointed, we may not write, the
        # store is down), do not try again before another threshold's worth.
        self._tried = self._seq
        self._dumped = None
        base = self.checkpoints.maybe_compact(
            self._seq,
            self._state,  # type: ignore[arg-type]
            self._base,
            threshold=threshold,
        )
        if base is None:
            return False
        self._base = base
        if self._adopt is not None and self._dumped is not None:
            with self.lock:
                self._adopt(self._state, self._dumped)  # type: ignore[arg-type]
        self._dumped = None
        return True

    def compact(self, threshold: int = 1) -> bool:
        """Bring the view up to date and checkpoint it if ``threshold`` or more
        log objects follow the newest checkpoint; whether one was written.

        For a writer about to exit, so that the next cold reader of the log
        folds a short tail. Never raises for the store (see maybe_compact).
        """
        with self._refreshing:
            self.refresh(0)
            return self._compact(threshold)
