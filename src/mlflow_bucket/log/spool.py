"""Write-behind: a durable local spool and a background flusher.

``Spool.enqueue(log_key, entries)`` writes the batch to a local file
(temp file, rename) and returns at once; a ``Flusher`` thread
appends everything queued for a log as one log object every
``flush_interval`` seconds (sooner when a lot is queued), deletes the files
only once the append succeeded, and retries forever with backoff while the
store is unreachable: training never raises because of the network.

Layout on local disk (one base folder per store, named by a hash of its
identity: URI and endpoint, ``ObjectStore.identity``)::

    <base>/<host>-<pid>-<rand>/        one per live process (or dead, not yet recovered)
        lock                           flock'ed by its owner for its whole life
        store.json                     the identity of the store it was made for
        000000000001-<batch>.json      a spooled batch, in enqueue order
        inflight-<id>.json             an upload attempt in progress
        <file>.bad                     a damaged file, set aside and reported

Crash recovery: a process that opens the spool claims every folder whose
lock it can take (its owner died; the kernel released the lock) and
uploads its batches, but only a folder made for the store opening it: one
whose ``store.json`` names another identity (a hash collision, a folder
moved by hand) is left alone with a warning. A folder without one was made
by a version before identities were recorded, whose base folder was named
by the URI alone: it is replayed by the store whose base folder it is in,
which for the old name is the store on its scheme's default endpoint; a
store on another endpoint warns about such folders and leaves them (see
``Spool._warn_legacy``).

A damaged file is renamed ``<file>.bad`` as it is reported (a warning
naming it) and deleted by the next recovery of its folder (the first claim
of it by another Spool, after which the folder can go), never by the one
that reported it.

Exactly once: every batch carries a unique id that is
written inside the log object. Before its first create attempt the flusher
records an ``inflight`` marker (the batch ids, their files, and the log's
tail at that moment). A batch named by no marker was never attempted and
is uploaded without further ado; for a marked one the recovering process
(or the same one, after a failed attempt) looks for the ids in the log
after the recorded tail and deletes the files if they are there.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import random
import re
import socket
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_bucket.storage import ObjectStore, TransientError
from mlflow_bucket.storage.base import validate_key

from . import codec
from .cache import _platform_dir, legacy_store_id, store_id
from .sequence import CacheOption, Entry, Log

log = logging.getLogger(__name__)

SPOOL_VERSION = 1
LOCK_NAME = "lock"
# The identity of the store a process folder was made for.
STORE_FILE = "store.json"
MARKER_PREFIX = "inflight-"
# A damaged spool file, set aside (reported) and deleted by the next recovery.
BAD_SUFFIX = ".bad"
# Test hook: after a successful append and before deleting the spool
# files, write the log number to this path and hang (tests then SIGKILL).
PAUSE_ENV = "MLFLOW_BUCKET_SPOOL_TEST_PAUSE_AFTER_APPEND"

_BATCH_FILE = re.compile(r"^[0-9]{12}-[0-9a-f]{32}\.json$")
_MARKER_FILE = re.compile(r"^inflight-[^/]*\.json$")
_MAX_BACKOFF = 60.0
# An abandoned ".new-*" folder (a process killed while creating its own)
# is removed once it is this old.
_STALE_NEW = 3600.0
# Folders of earlier versions this process has warned about (once each).
_WARNED_LEGACY: set[Path] = set()

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


# Open spools, flushed and closed when the interpreter exits.
_OPEN: weakref.WeakSet[Spool] = weakref.WeakSet()
_EXIT_HOOK = threading.Lock()
_exit_hooked = False


def _flush_at_exit() -> None:
    for spool in list(_OPEN):
        with contextlib.suppress(Exception):
            spool.flush(spool.exit_timeout)


def _close_at_exit() -> None:
    for spool in list(_OPEN):
        with contextlib.suppress(Exception):
            spool.close(spool.exit_timeout, give_up_on_error=True)


def _on_exit(spool: Spool) -> None:
    """Flush ``spool`` on a clean exit, while uploading is still possible.

    Two steps. A plain atexit hook runs too late for the bulk: by then
    concurrent.futures refuses new work ("cannot schedule new futures after
    interpreter shutdown"), and the cloud clients need executors (DNS
    lookups, parallel GETs). threading's own exit hooks run before that,
    newest first, so one registered now runs ahead of concurrent.futures'
    (registered at its import, which the storage layer has done already):
    it uploads everything queued so far, and leaves the spool open.

    But writers keep writing after it: MLflow ends the active run and
    flushes its async logging queue in plain atexit hooks, and non-daemon
    threads are joined only after threading's hooks. So the spool is
    closed by a plain atexit hook registered when this module is imported
    (during ``import mlflow``, through the plugins' entry points), which
    therefore runs after those registered later: it uploads the
    stragglers over the connections the first step left open, or leaves
    them for the next process if that fails.
    """
    global _exit_hooked
    _OPEN.add(spool)
    with _EXIT_HOOK:
        if _exit_hooked:
            return
        _exit_hooked = True
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython since 3.9 has it
        atexit.register(_flush_at_exit)
    else:
        register(_flush_at_exit)


atexit.register(_close_at_exit)


def default_spool_dir(store: ObjectStore) -> Path:
    """``$MLFLOW_BUCKET_SPOOL_DIR/<store id>``, else under the platform's user state folder.

    ``<store id>``: a hash of the store's identity (``cache.store_id``).
    """
    env = os.environ.get("MLFLOW_BUCKET_SPOOL_DIR")
    base = Path(env).expanduser() if env else _platform_dir("state") / "spool"
    return base / store_id(store)


def _fsync_dir(path: Path) -> None:
    # Makes a rename or unlink in the folder durable; not possible on Windows.
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    """All of ``data`` at ``path`` or nothing, surviving a crash of this process.

    No fsync: the kernel keeps the file when the process dies, which is the
    crash the spool is for; two fsyncs per logging call would cost more
    than the call's whole budget (about 1 ms). A crash of the machine may
    lose what was logged since the last upload (``flush_interval``).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_durably(path: Path, data: bytes) -> None:
    """All of ``data`` at ``path`` or nothing, surviving a crash once this returns."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _holds_batches(path: Path) -> int:
    """How many batches and upload attempts wait in process folder ``path``."""
    try:
        return sum(
            1 for p in path.iterdir() if _BATCH_FILE.match(p.name) or _MARKER_FILE.match(p.name)
        )
    except OSError:
        return 0


def _lock_free(path: Path) -> bool:
    """Whether no process holds ``path``'s lock (its owner died); taken for an instant."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)  # releases the lock taken here


def _worst(errors: list[BaseException]) -> BaseException:
    """The error a failed drain reports: one retrying cannot fix if any, else the first."""
    return next((e for e in errors if not isinstance(e, TransientError)), errors[0])


@dataclass
class _Item:
    """One spooled batch."""

    path: Path
    log: str
    batch: str
    after: int
    entries: list[Entry]


@dataclass(eq=False)
class _Dir:
    """A process folder whose lock this process holds: its own, or a dead one's."""

    path: Path
    fd: int
    own: bool
    items: dict[str, _Item] = field(default_factory=dict)  # by file name, in order


def _read_item(path: Path) -> _Item:
    doc = json.loads(path.read_bytes())
    if not isinstance(doc, dict) or doc.get("version") != SPOOL_VERSION:
        raise ValueError(f"unknown spool file version {doc.get('version')!r}")
    entries = doc["entries"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'entries' is not a list of objects")
    return _Item(path, str(doc["log"]), str(doc["batch"]), int(doc["after"]), entries)


class Spool:
    """A durable local queue of log appends, uploaded by a background Flusher.

    ``sync=True`` appends inside ``enqueue`` instead (network errors then
    raise there); dead processes' spools are still recovered in the
    background.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        store: ObjectStore,
        *,
        flush_interval: float = 2.0,
        max_batch_entries: int = 10_000,
        sync: bool = False,
        cache: CacheOption = "auto",
        exit_timeout: float = 30.0,
        rescan_interval: float = 300.0,
    ) -> None:
        self.store = store
        self.identity = store.identity
        self.base = Path(directory) if directory is not None else default_spool_dir(store)
        self.base.mkdir(parents=True, exist_ok=True)
        self.flush_interval = flush_interval
        self.max_batch_entries = max_batch_entries
        self.sync = sync
        self.exit_timeout = exit_timeout
        self.rescan_interval = rescan_interval
        self._cache = cache
        self._logs: dict[str, Log] = {}
        self._cond = threading.Condition()
        self._queued = 0  # entries waiting in the own folder
        self._counter = 0
        self._closed = False
        self.last_error: BaseException | None = None
        # Damaged files this spool set aside (and reported): never deleted by it.
        self._reported: set[Path] = set()
        # Folders of another store found in the base: warned about once.
        self._refused: set[Path] = set()
        self._own = self._make_own_dir()
        self._dirs: list[_Dir] = [self._own]
        # Claiming dead spools is local and quick, so it happens here: a
        # flush() right after opening covers them too. Uploading is the
        # flusher's job.
        self._adopt()
        self._warn_legacy()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flusher = Flusher(self)
        self._flusher.start()
        _on_exit(self)

    def __repr__(self) -> str:
        return f"Spool({str(self._own.path)!r}, {self.store.uri!r})"

    # -- folders and locks ----------------------------------------------------

    def _make_own_dir(self) -> _Dir:
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
        name = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        final = self.base / name
        if sys.platform == "win32":  # pragma: no cover
            final.mkdir()
            fd = os.open(final / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            _try_lock(fd)
            self._write_store_file(final)
            return _Dir(final, fd, own=True)
        # Locked, and its store recorded, before it is visible under its
        # final name: no other process can mistake it for a dead one's, or
        # for one of an earlier version (no store file).
        tmp = self.base / f".new-{name}"
        tmp.mkdir()
        fd = os.open(tmp / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        _try_lock(fd)
        self._write_store_file(tmp)
        os.rename(tmp, final)
        return _Dir(final, fd, own=True)

    def _write_store_file(self, folder: Path) -> None:
        doc = {
            "version": SPOOL_VERSION,
            "identity": self.identity,
            "uri": self.store.uri,
            "endpoint": self.store.endpoint,
        }
        _write_durably(folder / STORE_FILE, codec.canonical_json(doc))

    def _foreign(self, path: Path) -> str | None:
        """Why process folder ``path`` must not be replayed into this store, or None.

        None when its store file names this store's identity, and when it
        has none (an earlier version's folder: it belongs to the store whose
        base folder it is in, see the module's docstring).
        """
        try:
            data = (path / STORE_FILE).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"its {STORE_FILE} cannot be read ({exc})"
        try:
            doc = json.loads(data)
            recorded = doc["identity"]
            if not isinstance(recorded, str):
                raise TypeError("'identity' is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            return f"its {STORE_FILE} is damaged ({exc})"
        return None if recorded == self.identity else f"it belongs to {recorded}"

    def _warn_legacy(self) -> None:
        """Warn about what an earlier version left for this URI on another endpoint.

        Versions before the endpoint was part of a store's identity named
        the base folder by the URI alone, the name the store on the scheme's
        default endpoint still has. A store on another endpoint never
        replays such a folder: it cannot tell whether its batches were
        logged to this endpoint or another one (the default's process
        replays them). It names each one with batches whose process is
        gone, once per process, and how to replay it here.
        """
        if self.store.endpoint is None or self.base.name != store_id(self.store):
            return
        legacy = self.base.parent / legacy_store_id(self.store)
        try:
            folders = sorted(p for p in legacy.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        for path in folders:
            if path in _WARNED_LEGACY or (path / STORE_FILE).exists() or not path.is_dir():
                continue
            waiting = _holds_batches(path)
            if not waiting or not _lock_free(path):
                continue
            _WARNED_LEGACY.add(path)
            log.warning(
                "spool folder %s holds %d batch(es) spooled for %s by an earlier "
                "mlflow-bucket, which did not record the endpoint: not replayed into %s, as "
                "they may have been logged to another endpoint (a process opening %s on its "
                "default endpoint replays them). If they were logged to %s, move the folder "
                "into %s and open the store again",
                path,
                waiting,
                self.store.uri,
                self.identity,
                self.store.uri,
                self.store.endpoint,
                self.base,
            )

    def _held(self) -> set[Path]:
        with self._cond:
            return {d.path for d in self._dirs}

    def _adopt(self) -> None:
        """Claim the folders of dead processes (their lock is free)."""
        held = self._held()
        try:
            entries = sorted(os.scandir(self.base), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot scan spool folder %s: %s", self.base, exc)
            return
        for entry in entries:
            path = Path(entry.path)
            if path in held or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.startswith("."):
                self._remove_stale_new(path)
                continue
            reason = self._foreign(path)
            if reason is not None:
                if path not in self._refused and _holds_batches(path):
                    self._refused.add(path)
                    log.warning(
                        "spool folder %s is not replayed into %s: %s", path, self.identity, reason
                    )
                continue
            try:
                fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                continue  # removed meanwhile
            if not _try_lock(fd):
                os.close(fd)  # its owner is alive, or another process is recovering it
                continue
            if not path.is_dir():
                os.close(fd)
                continue
            d = _Dir(path, fd, own=False)
            self._remove_reported(path)
            for item_path in sorted(path.iterdir()):
                if not _BATCH_FILE.match(item_path.name):
                    continue
                try:
                    item = _read_item(item_path)
                except (OSError, ValueError, KeyError) as exc:
                    self._set_aside(item_path, exc)
                    continue
                d.items[item_path.name] = item
            log.info(
                "recovering %d spooled batch(es) of a dead process from %s", len(d.items), path
            )
            with self._cond:
                self._dirs.append(d)

    def _remove_stale_new(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime < _STALE_NEW:
                return
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if _try_lock(fd):
                    for child in path.iterdir():
                        child.unlink()
                    path.rmdir()
            finally:
                os.close(fd)

    def _set_aside(self, path: Path, exc: BaseException) -> None:
        """Report a damaged file, then rename it ``<name>.bad`` (see ``_remove_reported``)."""
        bad = path.with_name(path.name + BAD_SUFFIX)
        message = (
            f"spool file {path} is unreadable ({exc}); moved to {bad.name}, "
            "which the next recovery of its folder deletes"
        )
        log.warning("%s", message)
        warnings.warn(message, codec.CorruptObjectWarning, stacklevel=2)
        self._reported.add(bad)
        with contextlib.suppress(OSError):
            os.replace(path, bad)

    def _remove_reported(self, folder: Path) -> None:
        """Delete the damaged files an earlier recovery of ``folder`` set aside.

        A ``.bad`` file exists only once ``_set_aside`` has reported it (the
        warning comes before the rename); those this spool set aside itself
        stay until another one claims the folder, so that each report is
        made before, and by another recovery than, the deletion.
        """
        for bad in sorted(folder.glob(f"*{BAD_SUFFIX}")):
            if bad in self._reported:
                continue
            try:
                bad.unlink()
            except OSError as exc:
                log.debug("cannot delete %s: %s", bad, exc)
                continue
            log.info("deleted damaged spool file %s, reported when it was set aside", bad)

    def _release(self, d: _Dir) -> None:
        """Give a folder up; remove it if nothing is left in it."""
        leftovers = (
            [
                p
                for p in d.path.iterdir()
                if p.name not in (LOCK_NAME, STORE_FILE) and not p.name.startswith(".")
            ]
            if d.path.is_dir()
            else []
        )
        if not leftovers:
            # Unlink the lock before the folder: a process that opens the
            # lock file now finds nothing to do (or recreates an empty
            # folder's lock, which the next scan cleans up).
            with contextlib.suppress(OSError):
                for p in d.path.iterdir():
                    p.unlink()
                d.path.rmdir()
        os.close(d.fd)
        with self._cond:
            if d in self._dirs:
                self._dirs.remove(d)

    # -- the queue --------------------------------------------------------------

    def log(self, log_key: str) -> Log:
        """The Log object this spool appends to for ``log_key`` (one per key)."""
        with self._cond:
            found = self._logs.get(log_key)
            if found is None:
                validate_key(log_key.strip("/"))
                found = self._logs[log_key] = Log(self.store, log_key, cache=self._cache)
            return found

    def enqueue(self, log_key: str, entries: Iterable[Mapping[str, Any]]) -> str:
        """Queue one batch for ``log_key``; return its batch id.

        On local disk when this returns (it survives this process dying, see
        _write_atomically). Entries that are not JSON-serializable raise
        ValueError here, not later.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        items = [dict(e) for e in entries]
        batch = uuid.uuid4().hex
        target = self.log(log_key)
        if not items:
            return batch
        if self.sync:
            target.append(items, batches=[batch])
            return batch
        doc = {
            "version": SPOOL_VERSION,
            "log": log_key,
            "batch": batch,
            # The tail known now: a lower bound for where this batch can land.
            "after": target.known_tail,
            "entries": items,
        }
        data = codec.canonical_json(doc)
        with self._cond:
            self._counter += 1
            name = f"{self._counter:012d}-{batch}.json"
        path = self._own.path / name
        _write_atomically(path, data)
        with self._cond:
            self._own.items[name] = _Item(path, log_key, batch, doc["after"], items)  # type: ignore[arg-type]
            self._queued += len(items)
            large = self._queued >= self.max_batch_entries
        if large:
            self._wake.set()
        return batch

    def wake(self) -> None:
        """Upload what is queued now rather than at the next flush interval.

        Does not wait: the caller goes on while the flusher uploads.
        """
        self._wake.set()

    def pending(self, log_key: str) -> list[Entry]:
        """Entries queued for ``log_key`` and not uploaded yet, in order (read-your-writes)."""
        with self._cond:
            return [
                e
                for d in self._dirs
                for item in d.items.values()
                if item.log == log_key
                for e in item.entries
            ]

    def _pending_paths(self) -> set[Path]:
        with self._cond:
            return {item.path for d in self._dirs for item in d.items.values()}

    def pending_batches(self, log_key: str) -> set[str]:
        """Ids of the batches queued for ``log_key`` and not uploaded yet."""
        with self._cond:
            return {
                item.batch for d in self._dirs for item in d.items.values() if item.log == log_key
            }

    def flush(self, timeout: float | None = None, *, give_up_on_error: bool = False) -> bool:
        """Wait until everything queued so far is uploaded; False if not.

        False on timeout, and as soon as an upload fails for a reason that
        retrying cannot fix (any error but a TransientError: a 403, a
        damaged object, a full disk...). So ``flush()`` without a timeout
        waits out an unreachable store, but never a batch that cannot be
        uploaded; that batch stays queued, and the flusher keeps trying it.

        ``give_up_on_error``: also return False as soon as an upload attempt
        fails (at exit, rather than wait out the timeout).
        """
        targets = self._pending_paths()
        if not targets:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        permanent = self._flusher.permanent_failures
        failures = self._flusher.failures
        self._wake.set()
        with self._cond:
            while targets & {item.path for d in self._dirs for item in d.items.values()}:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._flusher.is_alive():
                    return False
                if self._flusher.permanent_failures > permanent:
                    return False
                if give_up_on_error and self._flusher.failures > failures:
                    return False
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    def close(self, timeout: float | None = None, *, give_up_on_error: bool = False) -> bool:
        """Flush (up to ``timeout``), stop the flusher, release the spool folder.

        What could not be uploaded stays on disk for the next process.
        Returns whether everything was uploaded.
        """
        if self._closed:
            return not self._pending_paths()
        done = self.flush(timeout, give_up_on_error=give_up_on_error)
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._flusher.join(timeout=5.0)
        _OPEN.discard(self)
        if self._flusher.is_alive():
            # Still inside an upload: keep the locks (the process's exit
            # releases them) so no one else uploads the same batches.
            log.warning("%r: flusher still busy at close; leaving its spool locked", self)
            return False
        for d in list(self._dirs):
            self._release(d)
        if not done:
            log.warning(
                "%r: %d batch(es) not uploaded; the next process on this store uploads them",
                self,
                len(self._pending_paths()),
            )
        return done

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        # Leaving on an exception: close as at exit, within exit_timeout (what
        # is not uploaded by then stays queued for the next process), rather
        # than hold the exception up for as long as the store is unreachable.
        self.close(None if exc[0] is None else self.exit_timeout)

    # -- uploading (called from the flusher thread) --------------------------

    def _drain(self) -> None:
        """Upload everything pending, folder by folder, oldest first."""
        errors: list[BaseException] = []
        with self._cond:
            # Dead processes' batches are older than ours: they go first.
            dirs = sorted(self._dirs, key=lambda d: d.own)
        for d in dirs:
            try:
                self._drain_dir(d)
            except Exception as exc:
                errors.append(exc)
                continue
            if not d.own and not d.items:
                self._release(d)
        if errors:
            raise _worst(errors)

    def _drain_dir(self, d: _Dir) -> None:
        for marker in sorted(d.path.glob(f"{MARKER_PREFIX}*.json")):
            self._resolve(d, marker)
        with self._cond:
            items = list(d.items.values())
        by_log: dict[str, list[_Item]] = {}
        for item in items:
            by_log.setdefault(item.log, []).append(item)
        errors: list[BaseException] = []
        for log_key, queued in by_log.items():
            try:
                chunk: list[_Item] = []
                size = 0
                for item in queued:
                    if chunk and size + len(item.entries) > self.max_batch_entries:
                        self._upload(d, log_key, chunk)
                        chunk, size = [], 0
                    chunk.append(item)
                    size += len(item.entries)
                if chunk:
                    self._upload(d, log_key, chunk)
            except Exception as exc:  # one log failing must not hold the others up
                errors.append(exc)
        if errors:
            raise _worst(errors)

    def _upload(self, d: _Dir, log_key: str, items: list[_Item]) -> None:
        target = self.log(log_key)
        entries = [e for item in items for e in item.entries]
        batches = [item.batch for item in items]
        marker = d.path / f"{MARKER_PREFIX}{uuid.uuid4().hex}.json"

        def before_create(tail: int) -> None:
            doc = {
                "version": SPOOL_VERSION,
                "log": log_key,
                "after": tail,
                "batches": batches,
                "files": [item.path.name for item in items],
            }
            _write_durably(marker, codec.canonical_json(doc))

        seq = target.append(entries, batches=batches, before_create=before_create)
        pause = os.environ.get(PAUSE_ENV)
        if pause:
            _write_durably(Path(pause), str(seq).encode())
            while True:
                time.sleep(3600)
        log.debug("uploaded %d entries to %s as %d", len(entries), target, seq)
        self._done(d, items, marker)

    def _done(self, d: _Dir, items: list[_Item], marker: Path | None) -> None:
        """The items are in the log: forget them, files first, then the marker."""
        for item in items:
            with contextlib.suppress(FileNotFoundError):
                item.path.unlink()
        with contextlib.suppress(OSError):
            _fsync_dir(d.path)
        if marker is not None:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        with self._cond:
            for item in items:
                if d.items.pop(item.path.name, None) is not None and d.own:
                    self._queued -= len(item.entries)
            self._cond.notify_all()

    def _resolve(self, d: _Dir, marker: Path) -> None:
        """Settle an upload attempt whose outcome is unknown (failed, or its process died)."""
        try:
            doc = json.loads(marker.read_bytes())
            names = [str(n) for n in doc["files"]]
            batches = [str(b) for b in doc["batches"]]
            log_key, after = str(doc["log"]), int(doc["after"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Markers are written atomically, so this is outside damage.
            self._set_aside(marker, exc)
            return
        with self._cond:
            items = [d.items[n] for n in names if n in d.items]
        if not items:
            marker.unlink(missing_ok=True)
            return
        found, complete = self.log(log_key).find_batches(batches, after)
        if found:
            log.info(
                "spooled batch(es) %s were already uploaded (log number %d); not again",
                ", ".join(sorted(found)),
                max(found.values()),
            )
            self._done(d, items, marker)
            return
        if not complete:
            log.warning(
                "cannot tell whether spooled batch(es) %s reached %s: the log was compacted "
                "since; uploading again (replay is idempotent)",
                ", ".join(batches),
                self.log(log_key),
            )
        # Not in the log: the files go again, in a fresh attempt.
        marker.unlink(missing_ok=True)


class Flusher(threading.Thread):
    """The spool's background uploader."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(name="mlflow-bucket-flusher", daemon=True)
        self.spool = spool
        self.failures = 0
        # Failed drains that retrying cannot fix (see Spool.flush).
        self.permanent_failures = 0

    def run(self) -> None:
        spool = self.spool
        backoff = 0.0
        next_scan = time.monotonic() + spool.rescan_interval
        # Dead processes' batches (claimed at opening) go up at once; our own
        # wait for the interval, so that a burst of logging makes one object.
        with spool._cond:
            first = any(not d.own for d in spool._dirs)
        while True:
            if not first:
                # No wake-up is lost: a set() before the clear is served by
                # the drain below, which starts after it and reads the queue
                # afresh; one during the drain ends the next wait at once.
                spool._wake.wait(backoff or spool.flush_interval)
                spool._wake.clear()
            first = False
            stopping = spool._stop.is_set()
            try:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + spool.rescan_interval
                    spool._adopt()
                spool._drain()
                backoff = 0.0
            except Exception as exc:
                self.failures += 1
                if not isinstance(exc, TransientError):
                    self.permanent_failures += 1
                spool.last_error = exc
                backoff = min(_MAX_BACKOFF, max(0.5, backoff * 2)) * random.uniform(0.75, 1.25)
                level = (
                    logging.WARNING
                    if self.failures == 1 or self.failures % 20 == 0
                    else logging.DEBUG
                )
                log.log(
                    level,
                    "spool upload failed (%d so far), retrying in %.1fs: %s",
                    self.failures,
                    backoff,
                    exc,
                )
                with spool._cond:
                    spool._cond.notify_all()
            if stopping:
                return
