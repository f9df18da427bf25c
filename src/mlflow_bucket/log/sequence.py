"""The log: an append-only, totally ordered, gapless sequence of batches on an object store.

A log lives under a root key (say ``exp/7``). Its batches are the objects
``<root>/log/<seq>``, ``seq`` zero-padded to 12 digits so that listing order
is numeric order. An append lists the tail after the last number this
process knows and creates ``last + 1`` with create-if-absent; on a conflict
it lists again and tries the next number. Every number is therefore claimed
by exactly one writer and only once its predecessor exists: the order is
total and has no holes, and no clock is trusted. A reader that has applied
everything up to N needs exactly the objects after N.

Garbage collection (checkpoint.py) deletes old batches that a checkpoint
covers, but never the newest one: so the listing after any number a
process once knew still shows the true tail, and an appender can never
re-create a number that was deleted. A reader who finds numbers missing
(deleted between its listing and its GET, or before it) gets LogTruncated
and re-reads from the newest checkpoint.

A gap no checkpoint covers (a foreign object put past the tail, say
``log/000000000009`` when the tail is 3) comes from neither: nobody
crosses it. Readers stop before it and writers take the number before it
as the tail, so they fill the gap; the object past it joins the log once
they reach it (docs/format.md, "Gaps").
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from mlflow_bucket.storage import (
    AlreadyExists,
    NotFound,
    ObjectInfo,
    ObjectStore,
    StorageError,
    TransientError,
)
from mlflow_bucket.storage.base import MAX_PAGE, validate_key

from . import codec
from .cache import ObjectCache

log = logging.getLogger(__name__)

Entry = dict[str, Any]

SEQ_DIGITS = 12
_SEQ_NAME = re.compile(r"^[0-9]{12}$")
_SIDE_NAME = re.compile(r"^[0-9a-f]{64}$")

CacheOption = ObjectCache | None | Literal["auto"]


class LogTruncated(Exception):
    """Log objects after the reader's position are gone: gc deleted them.

    They are covered by a newer checkpoint; re-read from it.
    """

    def __init__(self, where: str, missing: int, found: int | None) -> None:
        self.where = where
        self.missing = missing
        self.found = found
        # Set by append_and_read_back: its append succeeded, at this number.
        self.appended: int | None = None
        after = f"; the log resumes at {found}" if found is not None else ""
        super().__init__(
            f"{where}: log object {missing} is gone (compacted into a checkpoint and "
            f"garbage-collected){after}; re-read from the newest checkpoint"
        )


class AppendContention(TransientError):
    """An append lost every race for the next number within its attempts."""


@dataclass(frozen=True)
class Record:
    """One log object as read: its number, entries and the batch ids of the writes in it."""

    seq: int
    entries: list[Entry]
    batches: tuple[str, ...] = ()
    key: str = ""
    # A damaged or foreign object: it holds its number but no entries.
    corrupt: bool = field(default=False, compare=False)


def resolve_cache(store: ObjectStore, cache: CacheOption) -> ObjectCache | None:
    """``"auto"``: a disk cache for remote stores only; a local or memory store is its own."""
    if cache == "auto":
        return ObjectCache.for_store(store) if store.scheme in ("gs", "s3") else None
    return cache


class Log:
    """One log under ``root`` in ``store``. Thread-safe; share one per process."""

    def __init__(
        self,
        store: ObjectStore,
        root: str,
        *,
        cache: CacheOption = "auto",
        max_attempts: int = 200,
        relist_after: float = 60.0,
    ) -> None:
        root = root.strip("/")
        validate_key(root)
        self.store = store
        self.root = root
        self.log_prefix = f"{root}/log/"
        self.ckpt_prefix = f"{root}/ckpt/"
        self.side_prefix = f"{root}/side/"
        self.cache = resolve_cache(store, cache)
        self.max_attempts = max_attempts
        # An appender that paused this long (wall clock, so a suspended
        # laptop counts) between its listing and its create lists again:
        # gc's retention must exceed this, or the number it chose might
        # have been created, folded and deleted meanwhile.
        self.relist_after = relist_after
        self.page_size = MAX_PAGE
        self._lock = threading.Lock()
        self._known = 0
        self._warned: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"Log({self.store.url(self.root)!r})"

    # -- naming -------------------------------------------------------------

    def key(self, seq: int) -> str:
        return f"{self.log_prefix}{seq:0{SEQ_DIGITS}d}"

    def checkpoint_key(self, seq: int) -> str:
        return f"{self.ckpt_prefix}{seq:0{SEQ_DIGITS}d}"

    def side_key(self, ref: str) -> str:
        return f"{self.side_prefix}{ref}"

    def url(self, key: str) -> str:
        return self.store.url(key)

    def _warn_once(self, where: str, reason: str, *, kind: str = "corrupt") -> None:
        """One warning per object and kind for the life of this Log.

        ``kind`` "corrupt": the object is not a valid document and is
        skipped; any other kind: ``reason`` says what happens instead.
        """
        with self._lock:
            if (kind, where) in self._warned:
                return
            self._warned.add((kind, where))
        if kind == "corrupt":
            log.warning("skipping %s: %s", where, reason)
            codec.warn_corrupt(where, reason)
        else:
            log.warning("%s: %s", where, reason)
            codec.warn_object(where, reason)

    def _seq_of(self, key: str, prefix: str) -> int | None:
        name = key[len(prefix) :]
        if _SEQ_NAME.match(name):
            return int(name)
        self._warn_once(self.url(key), "its name is not a 12-digit sequence number")
        return None

    def _listed(self, prefix: str, after: int) -> Iterator[tuple[int, ObjectInfo]]:
        """Valid numbered objects under ``prefix`` after ``after``, in order."""
        start = f"{prefix}{after:0{SEQ_DIGITS}d}" if after > 0 else None
        for info in self.store.list_objects(prefix, start_after=start):
            seq = self._seq_of(info.key, prefix)
            if seq is not None and seq > after:
                yield seq, info

    # -- gaps ---------------------------------------------------------------------

    def covered(self, found: int) -> bool:
        """Whether a checkpoint numbered ``found - 1`` or higher is listed (one LIST).

        Log objects missing before ``found`` may then have been collected by
        gc, which deletes only what a checkpoint folded; otherwise the gap
        is uncovered and ``found`` lies past it (docs/format.md, "Gaps").
        Readable or not: a damaged checkpoint may have been collected under.
        """
        return next(self._listed(self.ckpt_prefix, max(0, found - 2)), None) is not None

    def _past_gap(self, missing: int, found: int) -> None:
        self._warn_once(
            self.url(self.key(found)),
            f"log object {missing} does not exist and no checkpoint covers it, so this "
            "object and those after it are not part of the log: ignored until writers "
            "fill the gap (a foreign object, or log objects deleted by something else than gc)",
            kind="gap",
        )

    def _reachable(
        self, after: int, listed: Iterable[tuple[int, ObjectInfo]]
    ) -> Iterator[tuple[int, ObjectInfo]]:
        """The listed objects after ``after`` a writer counts: across collected
        stretches (covered gaps), up to the first uncovered gap."""
        expected = after + 1
        for seq, info in listed:
            if seq != expected and not self.covered(seq):
                self._past_gap(expected, seq)
                return
            yield seq, info
            expected = seq + 1

    def past_gap(self) -> tuple[int, list[ObjectInfo]] | None:
        """The log's first gap no checkpoint covers, as (its first missing
        number, every object listed past it), or None. For ``doctor``: these
        objects are foreign until writers fill the gap (docs/format.md, "Gaps").

        An uncovered gap ends above every checkpoint, so listing after the
        newest one finds it: a LIST of ``ckpt/``, one of ``log/`` per 1000
        objects after it, and one of ``ckpt/`` per gap met.
        """
        ckpts = self.checkpoints()
        start = ckpts[-1][0] if ckpts else 0
        listed = list(self._listed(self.log_prefix, start))
        expected = start + 1
        for i, (seq, _) in enumerate(listed):
            if seq != expected and not self.covered(seq):
                return expected, [info for _, info in listed[i:]]
            expected = seq + 1
        return None

    def reachable_tail(self, listed: Iterable[tuple[int, ObjectInfo]], after: int = 0) -> int:
        """The last of ``listed`` (objects after ``after``, in order) before any
        uncovered gap: the true tail, which gc must keep and writers append after."""
        last = after
        for seq, _ in self._reachable(after, listed):
            last = seq
        return last

    # -- the tail -------------------------------------------------------------

    @property
    def known_tail(self) -> int:
        """The highest number this process knows to exist (no request)."""
        with self._lock:
            return self._known

    def _note(self, seq: int) -> None:
        with self._lock:
            self._known = max(self._known, seq)

    def checkpoints(self) -> list[tuple[int, ObjectInfo]]:
        """Every checkpoint object, oldest first (one LIST)."""
        return list(self._listed(self.ckpt_prefix, 0))

    def _start_hint(self) -> int:
        """Where a listing for the tail may start: what we know, else the latest checkpoint.

        A fresh process would otherwise list every retained log object.
        """
        known = self.known_tail
        if known > 0:
            return known
        ckpts = self.checkpoints()
        return ckpts[-1][0] if ckpts else 0

    def tail(self) -> int:
        """The number of the newest log object, 0 for an empty log.

        Objects past an uncovered gap do not count (docs/format.md, "Gaps").
        """
        start = self._start_hint()
        last = self.reachable_tail(self._listed(self.log_prefix, start), start)
        self._note(last)
        return last

    # -- appending --------------------------------------------------------------

    def append(
        self,
        entries: Iterable[Mapping[str, Any]],
        *,
        batches: Sequence[str] | None = None,
        before_create: Callable[[int], None] | None = None,
    ) -> int:
        """Append one batch atomically; return its number.

        ``batches`` are ids of the writes this object carries (a fresh id by
        default), so that a writer unsure whether an earlier attempt landed
        can look for them (find_batches). ``before_create(tail)`` runs once,
        after the first listing and before the first create attempt, with
        the tail seen: the spool records it to bound that search.
        """
        seq, _ = self._append(entries, batches, before_create, start=None, collect=False)
        return seq

    def append_and_read_back(
        self, entries: Iterable[Mapping[str, Any]], *, after: int = 0
    ) -> tuple[int, list[tuple[int, list[Entry]]]]:
        """Append, and return every batch between ``after`` and the new one.

        The basis of uniqueness decided by the log: "the first entry in log
        order that claims X wins" is the same for every reader, and the
        writer at N decides it by reading what precedes N. A caller whose
        state is folded up to S passes ``after=S``. LogTruncated means part
        of (after, N) was compacted away (the append itself succeeded, at
        ``exc.appended``): fold a newer checkpoint instead.
        """
        seq, listed = self._append(entries, None, None, start=after, collect=True)
        try:
            expected = after + 1
            for got, _ in listed:
                if got != expected:
                    raise LogTruncated(self.url(self.key(expected)), expected, got)
                expected += 1
            if expected != seq:
                raise LogTruncated(self.url(self.key(expected)), expected, seq)
            return seq, [(r.seq, r.entries) for r in self._fetch(listed)]
        except LogTruncated as exc:
            exc.appended = seq
            raise

    def _append(
        self,
        entries: Iterable[Mapping[str, Any]],
        batches: Sequence[str] | None,
        before_create: Callable[[int], None] | None,
        *,
        start: int | None,
        collect: bool,
    ) -> tuple[int, list[tuple[int, ObjectInfo]]]:
        items = [dict(e) for e in entries]
        ids = list(batches) if batches else [uuid.uuid4().hex]
        payload = codec.encode_batch(items, ids)
        known = self._start_hint() if start is None else start
        listed: list[tuple[int, ObjectInfo]] = []
        hook = before_create
        conflicts = 0
        for _ in range(self.max_attempts):
            last = known
            # Never past an uncovered gap: the writer fills it instead.
            for seq, info in self._reachable(known, self._listed(self.log_prefix, known)):
                last = seq
                if collect:
                    listed.append((seq, info))
            listed_at = time.time()
            if hook is not None:
                hook(last)
                hook = None
            if time.time() - listed_at > self.relist_after:
                known = last
                continue
            claim = last + 1
            try:
                info = self.store.create(self.key(claim), payload)
            except AlreadyExists:
                self._note(claim)
                # With collect, list from `last` so that `claim` is read too.
                known = last if collect else claim
                conflicts += 1
                if conflicts >= 3:
                    # Heavy contention: spread the writers out a little.
                    time.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** (conflicts - 3))))
                continue
            self._note(claim)
            if self.cache is not None:
                self.cache.put(self.key(claim), info.version, payload)
            return claim, listed
        raise AppendContention(
            f"lost the race for the next log number {self.max_attempts} times",
            operation="append",
            url=self.url(self.log_prefix),
        )

    # -- reading --------------------------------------------------------------

    def read(self, after: int = 0) -> Iterator[tuple[int, list[Entry]]]:
        """(seq, entries) of every batch after ``after``, in order."""
        for record in self.records(after):
            yield record.seq, record.entries

    def records(self, after: int = 0, *, upto: int | None = None) -> Iterator[Record]:
        """Every log object after ``after`` (and up to ``upto``), in order.

        One LIST per 1000 objects, and the objects themselves fetched in
        parallel (or from the local cache). Damaged objects are yielded
        empty, with a warning naming them. At a gap, the objects before it
        are yielded first; then, if a checkpoint covers the gap (gc deleted
        it), LogTruncated is raised, else the records end there: what lies
        past an uncovered gap is not part of the log (yet), and a warning
        names it (docs/format.md, "Gaps").
        """
        expected = after + 1
        start = self.key(after) if after > 0 else None
        token: str | None = None
        while True:
            page = self.store.list_page(
                self.log_prefix, start_after=start, token=token, max_results=self.page_size
            )
            items: list[tuple[int, ObjectInfo]] = []
            done = False
            truncated: LogTruncated | None = None
            for info in page.objects:
                seq = self._seq_of(info.key, self.log_prefix)
                if seq is None or seq <= after:
                    continue
                if upto is not None and seq > upto:
                    done = True
                    break
                if seq != expected:
                    if self.covered(seq):
                        truncated = LogTruncated(self.url(self.key(expected)), expected, seq)
                    else:
                        self._past_gap(expected, seq)
                    done = True
                    break
                items.append((seq, info))
                expected += 1
            if items:
                self._note(items[-1][0])
            yield from self._fetch(items)
            if truncated is not None:
                raise truncated
            if done or not page.next_token:
                return
            token = page.next_token

    def _fetch(self, items: list[tuple[int, ObjectInfo]]) -> Iterator[Record]:
        """The listed objects, decoded, in order; parallel GETs for cache misses."""
        chunk = max(8, self.store.concurrency)
        for i in range(0, len(items), chunk):
            part = items[i : i + chunk]
            data: dict[str, bytes] = {}
            missing: list[ObjectInfo] = []
            for _, info in part:
                hit = self.cache.get(info.key, info.version) if self.cache is not None else None
                if hit is None:
                    missing.append(info)
                else:
                    data[info.key] = hit
            cached = set(data)
            if missing:
                try:
                    fetched = self.store.get_many(info.key for info in missing)
                except NotFound as exc:
                    gone = next(
                        (
                            s
                            for s, info in part
                            if info.key not in data and exc.url.endswith(info.key)
                        ),
                        part[0][0],
                    )
                    raise LogTruncated(exc.url, gone, None) from exc
                for info in missing:
                    if self.cache is not None:
                        self.cache.put(info.key, info.version, fetched[info.key])
                data.update(fetched)
            for seq, info in part:
                where = self.url(info.key)
                try:
                    try:
                        entries, batches = codec.decode_batch(data[info.key], where)
                    except codec.CorruptObject:
                        if info.key not in cached:
                            raise
                        # The local copy is damaged, not necessarily the object.
                        entries, batches = codec.decode_batch(self._refetch(info), where)
                except codec.CorruptObject as exc:
                    self._warn_once(where, exc.reason)
                    yield Record(seq, [], (), info.key, corrupt=True)
                    continue
                yield Record(seq, entries, tuple(batches), info.key)

    def _refetch(self, info: ObjectInfo) -> bytes:
        """The object from the store, replacing a cached copy that did not decode."""
        try:
            data = self.store.get(info.key)
        except NotFound as exc:
            raise LogTruncated(exc.url, int(info.key[len(self.log_prefix) :]), None) from exc
        if self.cache is not None:
            self.cache.put(info.key, info.version, data)
        return data

    def find_batches(self, ids: Iterable[str], after: int) -> tuple[dict[str, int], bool]:
        """Which of the batch ids appear in the log after ``after``, and at which number.

        The second value says whether the search was complete: False when
        part of the range was already compacted away, so an id not found
        may still have been appended.
        """
        wanted = set(ids)
        found: dict[str, int] = {}
        complete = True
        start = after
        while True:
            try:
                for record in self.records(start):
                    for batch in record.batches:
                        if batch in wanted:
                            found[batch] = record.seq
                return found, complete
            except LogTruncated as exc:
                complete = False
                start = exc.found - 1 if exc.found is not None else exc.missing

    # -- side objects -------------------------------------------------------------

    def read_side(self, ref: str) -> Any:
        """The data of side object ``ref`` (named by a hash of its content; cached)."""
        if not _SIDE_NAME.match(ref):
            raise ValueError(f"not a side-object reference: {ref!r}")
        key = self.side_key(ref)
        data = self.cache.get(key, "") if self.cache is not None else None
        if data is not None:
            try:
                return codec.decode_side(data, self.url(key))
            except codec.CorruptObject:
                pass  # the local copy is damaged, not necessarily the object
        data = self.store.get(key)
        decoded = codec.decode_side(data, self.url(key))
        # Cached once it decodes: a damaged object repaired later is read again.
        if self.cache is not None:
            self.cache.put(key, "", data)
        return decoded

    def prefetch_sides(self, refs: Iterable[str]) -> None:
        """Fetch side objects missing from the local cache, in parallel.

        Later ``read_side`` calls are then served locally: a reader that
        needs several (the histories of ten runs) waits for one round trip,
        not ten. Without a cache there is nowhere to keep them: nothing to do.
        """
        if self.cache is None:
            return
        keys = []
        for ref in dict.fromkeys(refs):
            if not _SIDE_NAME.match(ref):
                raise ValueError(f"not a side-object reference: {ref!r}")
            key = self.side_key(ref)
            if not self.cache.contains(key, ""):
                keys.append(key)
        if not keys:
            return
        try:
            fetched = self.store.get_many(keys)
        except StorageError as exc:  # best effort: the reads themselves will tell
            log.debug("prefetch of side objects of %s failed: %s", self, exc)
            return
        for key, data in fetched.items():
            self.cache.put(key, "", data)

    def write_side(self, data: Any, *, existing: Container[str] = ()) -> str:
        """Store ``data`` as a side object; return its reference.

        The name is the SHA-256 of the data's canonical JSON, so equal data
        is stored once. A reference in ``existing`` (side objects of a
        checkpoint that still exists) is not written again. Otherwise the
        object is written unconditionally: an identical rewrite renews its
        time, so gc, which spares anything younger than its retention,
        cannot delete it before the checkpoint that references it lands.
        """
        ref, payload = codec.encode_side_with_ref(data)
        if ref not in existing:
            key = self.side_key(ref)
            self.store.put(key, payload)
            if self.cache is not None:
                self.cache.put(key, "", payload)
        return ref

    def write_sides(self, items: list[Any], *, existing: Container[str] = ()) -> list[str]:
        """``write_side`` for many at once, in parallel.

        A checkpoint of an experiment whose runs all logged metrics writes
        one side object per run: one at a time, that is minutes on a bucket.
        Each object is encoded, uploaded and cached in one task, so that
        the encoding of some overlaps the uploads of others.
        """
        if len(items) <= 1:
            return [self.write_side(data, existing=existing) for data in items]
        workers = max(1, min(self.store.concurrency, len(items)))
        with ThreadPoolExecutor(workers, thread_name_prefix="mlflow-bucket-side") as pool:
            return list(pool.map(lambda data: self.write_side(data, existing=existing), items))
