"""Checkpoints: the log folded into a state, stored so that a cold read stays short.

The user of a log supplies ``fold(state, seq, entries) -> state``: pure,
deterministic and idempotent (applying the same batch twice changes
nothing), so every reader computes the same state and a second compactor or
an overlapping read is harmless. A checkpoint is the state folded up to
number C, stored as the immutable object ``<root>/ckpt/<C>``, written with
create-if-absent: racing compactors write the same content and the loser's
"already exists" is success.

A cold read is: LIST ckpt/ (take the newest), GET it, LIST log/ after it,
GET those objects in parallel. Whoever reads a tail longer than the
threshold writes a new checkpoint; gc() then deletes log objects older than
the retention window that two readable checkpoints cover (never the newest
one), all but the newest two checkpoints, and side objects no checkpoint
references. So a newest checkpoint damaged later gives way to the one
before it with every log object after that still there: nothing is lost.

Large, cold data (histories, say) goes in side objects: ``dump(state,
side)`` turns the state into the checkpoint's JSON and may move parts of it
into side objects with ``side.put(data) -> ref``, keeping only the
reference. Side objects are written before the checkpoint that references
them, so a checkpoint never points at something missing.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from mlflow_bucket.storage import AlreadyExists, NotFound, ObjectInfo, StorageError

from . import codec
from .sequence import Entry, Log, LogTruncated

log = logging.getLogger(__name__)

S = TypeVar("S")

FoldFn = Callable[[S, int, list[Entry]], S]


class LogGap(StorageError):
    """A cold read could not settle: the log kept being truncated under it.

    A StorageError, so that it reaches MLflow and the command line like
    any failure of the bucket. (Missing log objects no checkpoint covers
    are not an error: readers stop before such a gap, docs/format.md.)
    """


@dataclass(frozen=True)
class Compaction:
    """When to checkpoint and what gc() may delete."""

    # Write a checkpoint once this many log objects follow the newest one
    # (0 turns automatic checkpoints off).
    threshold: int = 32
    # Seconds, on the store's clock: log objects and side objects younger
    # than this are never deleted. It must exceed the longest pause of an
    # appender between its listing and its create (Log.relist_after).
    retention: float = 3600.0
    # Checkpoints kept by gc(): the newest readable ones; at least 2, so
    # that a damaged newest checkpoint leaves a readable one before it with
    # every log object after it.
    keep: int = 2
    # Run gc() after writing a checkpoint.
    gc: bool = True


@dataclass(frozen=True)
class GcReport:
    checkpoint: int  # the newest readable checkpoint gc() relied on (0: none)
    log_objects: int
    checkpoints: int
    side_objects: int


@dataclass(frozen=True)
class Base:
    """The checkpoint a state was loaded from."""

    seq: int
    refs: frozenset[str]
    # Numbers of the checkpoints listed when it was loaded.
    listed: tuple[int, ...] = ()

    @property
    def newest_listed(self) -> int:
        return max(self.listed, default=0)


class SideObjects:
    """Handed to ``dump``: stores cold data beside the checkpoint being written."""

    def __init__(self, log: Log, existing: frozenset[str]) -> None:
        self._log = log
        self._existing = existing
        self.refs: set[str] = set()

    def put(self, data: Any) -> str:
        """Store JSON-able ``data``; return the reference to keep in the state."""
        ref = self._log.write_side(data, existing=self._existing | self.refs)
        self.refs.add(ref)
        return ref

    def put_many(self, items: list[Any]) -> list[str]:
        """``put`` for many at once, uploaded in parallel."""
        refs = self._log.write_sides(items, existing=self._existing | self.refs)
        self.refs.update(refs)
        return refs

    def keep(self, ref: str) -> str:
        """Reference an unchanged side object from the state's checkpoint again.

        If that checkpoint is gone (so gc may collect the object), it is
        read and written again, which renews it.
        """
        if ref not in self._existing and ref not in self.refs:
            return self.put(self._log.read_side(ref))
        self.refs.add(ref)
        return ref

    def get(self, ref: str) -> Any:
        return self._log.read_side(ref)

    def url(self, ref: str) -> str:
        """Where side object ``ref`` lives, for messages."""
        return self._log.url(self._log.side_key(ref))


def _older(info: ObjectInfo, cutoff: datetime) -> bool:
    if info.updated is None:
        return False  # no time: never old enough to delete
    updated = info.updated if info.updated.tzinfo else info.updated.replace(tzinfo=UTC)
    return updated < cutoff


class Checkpoints(Generic[S]):
    """Cold reads, checkpoint writes and gc for one log and one fold.

    ``initial`` is the empty state, or a function returning a fresh one.
    ``dump(state, side)`` turns a state into the checkpoint's JSON (default:
    the state itself) and must not modify the state; ``load(doc)`` is its
    inverse. Side objects are read back with ``log.read_side(ref)``.
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
    ) -> None:
        self.log = log
        self.fold = fold
        self._initial = initial
        self._dump = dump
        self._load = load
        self.compaction = compaction or Compaction()

    def initial(self) -> S:
        """A fresh initial state (the fold may mutate what it is given)."""
        if callable(self._initial):
            return self._initial()
        return copy.deepcopy(self._initial)

    # -- reading checkpoints ------------------------------------------------------

    def _document(self, seq: int, info: ObjectInfo) -> tuple[Any, list[str]]:
        """(state JSON, side refs) of one listed checkpoint; cached by version."""
        cache = self.log.cache
        where = self.log.url(info.key)
        data = cache.get(info.key, info.version) if cache is not None else None
        decoded = None
        if data is not None:
            # A local copy that does not decode is damaged, not necessarily the
            # object: the store's copy decides.
            with contextlib.suppress(codec.CorruptObject):
                decoded = codec.decode_checkpoint(data, where)
        if decoded is None:
            data = self.log.store.get(info.key)
            if cache is not None:
                cache.put(info.key, info.version, data)
            decoded = codec.decode_checkpoint(data, where)
        found, state, refs = decoded
        if found != seq:
            raise codec.CorruptObject(where, f"it holds number {found}, its name says {seq}")
        return state, refs

    def latest(self) -> tuple[Base, S]:
        """The newest readable checkpoint and its state ((0, initial) if none).

        A damaged checkpoint is skipped with a warning for the one before
        it; one deleted between the listing and the GET (gc) means a newer
        one exists: list again.
        """
        for _ in range(10):
            listed = self.log.checkpoints()
            numbers = tuple(seq for seq, _ in listed)
            vanished = False
            for seq, info in reversed(listed):
                try:
                    doc, refs = self._document(seq, info)
                except NotFound:
                    vanished = True
                    break
                except codec.CorruptObject as exc:
                    self.log._warn_once(exc.where, exc.reason)
                    continue
                state = self._load(doc) if self._load is not None else doc
                return Base(seq, frozenset(refs), numbers), state
            if not vanished:
                return Base(0, frozenset(), numbers), self.initial()
        raise StorageError(
            "checkpoints kept vanishing while being read",
            operation="load",
            url=self.log.url(self.log.ckpt_prefix),
        )

    def catch_up(self, seq: int, state: S) -> tuple[int, S, int]:
        """Fold the log after ``seq`` into ``state``: (seq, state, objects folded).

        Raises LogTruncated if part of the tail was compacted away.
        """
        count = 0
        for record in self.log.records(seq):
            state = self.fold(state, record.seq, record.entries)
            seq = record.seq
            count += 1
        return seq, state, count

    def read(self) -> tuple[int, S, Base]:
        """A cold read: (seq, state, the checkpoint it started from).

        The newest readable checkpoint plus the log objects after it. Where
        log objects are missing (docs/format.md, "Reading"): a newer
        readable checkpoint, if gc wrote one meanwhile, is started from
        again; a stretch covered only by checkpoints this code cannot read
        (a damaged newest checkpoint over objects an older gc collected) is
        passed over with a warning naming the checkpoint, serving what
        remains; the log ends before a gap no checkpoint covers.
        """
        base, state = self.latest()
        seq = base.seq
        for _ in range(20):
            try:
                for record in self.log.records(seq):
                    state = self.fold(state, record.seq, record.entries)
                    seq = record.seq
                return seq, state, base
            except LogTruncated as exc:
                newer, newer_state = self.latest()
                if newer.seq > seq:
                    # gc got there first: a checkpoint covering more exists now.
                    base, state, seq = newer, newer_state, newer.seq
                    continue
                if exc.found is None:
                    continue  # an object vanished between LIST and GET: list again
                self._passed_over(newer, exc.missing, exc.found)
                seq = exc.found - 1
        raise LogGap(
            "the log kept being truncated under a cold read",
            operation="read",
            url=self.log.url(self.log.log_prefix),
        )

    def _passed_over(self, base: Base, missing: int, found: int) -> None:
        """Warn that log objects ``missing``..``found - 1`` are gone and only an
        unreadable checkpoint held them, naming that checkpoint."""
        covering = [c for c in base.listed if c >= found - 1 and c > base.seq]
        key = self.log.checkpoint_key(min(covering)) if covering else self.log.key(missing)
        before = f"checkpoint {base.seq}" if base.seq else "the empty state"
        self.log._warn_once(
            self.log.url(key),
            f"log objects {missing}..{found - 1} were folded into this checkpoint and "
            f"garbage-collected, and it cannot be read: what they held is missing; "
            f"reading {before} and the log objects from {found} on",
            kind="lost",
        )

    def load(self, *, compact: bool = True) -> tuple[int, S]:
        """The state of the whole log: (seq, state).

        With ``compact``, a reader that found a long tail writes a new
        checkpoint (and runs gc), so the next cold read is short.
        """
        seq, state, base = self.read()
        if compact:
            self.maybe_compact(seq, state, base)
        return seq, state

    # -- writing checkpoints ------------------------------------------------------

    def write(self, seq: int, state: S, base: Base | None = None) -> tuple[bool, frozenset[str]]:
        """Store ``state`` (folded up to ``seq``) as checkpoint ``seq``.

        Returns (created, side refs); created is False when another writer
        made the same checkpoint first. ``base``, the checkpoint the state
        came from, lets unchanged side objects be referenced without a write.
        """
        existing = base.refs if base is not None else frozenset()
        side = SideObjects(self.log, existing)
        doc = self._dump(state, side) if self._dump is not None else state
        payload = codec.encode_checkpoint(seq, doc, sorted(side.refs))
        key = self.log.checkpoint_key(seq)
        try:
            info = self.log.store.create(key, payload)
        except AlreadyExists:
            return False, frozenset(side.refs)
        if self.log.cache is not None:
            self.log.cache.put(key, info.version, payload)
        return True, frozenset(side.refs)

    def maybe_compact(
        self, seq: int, state: S, base: Base, *, threshold: int | None = None
    ) -> Base | None:
        """Checkpoint at ``seq`` if the tail since the newest checkpoint is long.

        Long: ``threshold`` log objects or more (default: the compaction's).
        Never fails the caller: a reader without write access, or a store
        that is down, just leaves compaction to someone else. Returns the
        new checkpoint's Base when one was written.
        """
        if threshold is None:
            threshold = self.compaction.threshold
        if threshold <= 0 or seq - base.newest_listed < threshold:
            return None
        try:
            # A base that is no longer listed may have been collected: its
            # side objects must be renewed rather than assumed.
            listed = tuple(s for s, _ in self.log.checkpoints())
            if seq - max(listed, default=0) < threshold:
                return None
            usable = base if base.seq in listed else None
            _, refs = self.write(seq, state, usable)
            if self.compaction.gc:
                self.gc()
        except (StorageError, OSError, codec.CorruptObject) as exc:
            # A damaged object the dump needed (a side object, say) must not
            # make the state unreadable: readers still fold the log.
            log.info("compaction of %s at %d skipped: %s", self.log, seq, exc)
            return None
        return Base(seq, refs, (*listed, seq))

    def compact(self) -> int:
        """Write a checkpoint at the current tail (if it has none); return its number."""
        seq, state, base = self.read()
        if seq > base.seq:
            self.write(seq, state, base)
        return seq

    # -- garbage collection -----------------------------------------------------

    def _readable(
        self, listed: list[tuple[int, ObjectInfo]], limit: int
    ) -> list[tuple[int, list[str]]]:
        """The newest ``limit`` readable checkpoints, newest first, with their side refs."""
        out: list[tuple[int, list[str]]] = []
        for seq, info in reversed(listed):
            if len(out) >= limit:
                break
            try:
                _, refs = self._document(seq, info)
            except NotFound:
                continue
            except codec.CorruptObject as exc:
                self.log._warn_once(exc.where, exc.reason)
                continue
            out.append((seq, refs))
        return out

    def kept(self) -> int:
        """How many of the newest readable checkpoints gc keeps: at least 2."""
        return max(2, self.compaction.keep)

    def gc(self) -> GcReport:
        """Delete what the newest readable checkpoints make unnecessary.

        - log objects the two newest readable checkpoints both cover (at or
          below the second-newest), older than the retention window (store
          clock), except the newest log object, which must stay so that
          appenders always see the true tail: if the newest checkpoint is
          damaged later, the one before it still has every log object
          after it;
        - checkpoints older than the newest ``kept()`` readable ones;
        - side objects that no remaining checkpoint references, older than
          the retention window (so that a compactor's side objects are safe
          until its checkpoint lands).

        A checkpoint written by a newer release (FormatTooNew) stops gc:
        nothing is deleted on the strength of what this code cannot read.
        """
        store = self.log.store
        cutoff = store.server_time() - timedelta(seconds=self.compaction.retention)
        listed = self.log.checkpoints()
        readable = self._readable(listed, self.kept())
        if not readable:
            return GcReport(0, 0, 0, 0)
        newest = readable[0][0]
        oldest_kept = readable[-1][0]
        # Covered twice: at or below the second-newest readable checkpoint.
        covered = readable[1][0] if len(readable) > 1 else 0

        objects = list(self.log._listed(self.log.log_prefix, 0))
        # The true tail: objects past an uncovered gap are not the log's.
        top = self.log.reachable_tail(objects)
        doomed_log = [
            info.key
            for seq, info in objects
            if seq <= covered and seq < top and _older(info, cutoff)
        ]
        # Oldest first: a reader racing gc meets one gap, not a scattering.
        for key in doomed_log:
            store.delete(key)

        doomed_ckpt = [info.key for seq, info in listed if seq < oldest_kept]
        store.delete_many(doomed_ckpt)

        # Side objects are listed before the checkpoints are read again: one
        # written after this listing is not a candidate; one referenced by a
        # checkpoint written after it is young, hence spared.
        sides = list(store.list_objects(self.log.side_prefix))
        doomed_side: list[str] = []
        if sides:
            remaining = self.log.checkpoints()
            referenced: set[str] = set()
            for _, refs in self._readable(remaining, len(remaining)):
                referenced.update(refs)
            doomed_side = [
                info.key
                for info in sides
                if info.key[len(self.log.side_prefix) :] not in referenced and _older(info, cutoff)
            ]
            store.delete_many(doomed_side)
        return GcReport(newest, len(doomed_log), len(doomed_ckpt), len(doomed_side))
