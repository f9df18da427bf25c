"""One open tracking store: its logs, views, spool and this process's own writes.

Shared by every ``BucketTrackingStore`` opened on the same URI in a process,
so that MLflow's several store instances see one another's writes at once.

Reads come from ``LogView``s (a checkpoint plus the log's tail, refreshed
by at most one LIST per ``refresh_interval``). Writes to runs go through the
spool and reach the log a moment later; until then, and until the view has
folded them, reads overlay this process's own entries on the runs they
touched (read-your-writes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import operator
import os
import sys
import threading
import time
import uuid
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow_bucket.config import Settings
from mlflow_bucket.log import (
    ClockOffset,
    Compaction,
    CorruptObject,
    Log,
    LogView,
    ObjectCache,
    SideObjects,
    Spool,
    default_spool_dir,
)
from mlflow_bucket.log.cache import store_id
from mlflow_bucket.log.codec import warn_corrupt
from mlflow_bucket.marker import ensure_marker
from mlflow_bucket.project import store_setup
from mlflow_bucket.storage import ObjectStore, TransientError, open_store

from .. import mlflow_compat as compat
from .entry_checks import Check, check_experiments_entry, check_index_entry, check_run_entry
from .fold import (
    Entry,
    State,
    copy_doc,
    fold_experiment,
    fold_experiments,
    new_experiment_state,
    new_experiments_state,
)

log = logging.getLogger(__name__)

EXPERIMENTS_LOG = "tracking/experiments"
INDEX_LOG = "tracking/index"

# How long a read waits for a listing of news before it answers from the
# state it has. Every logging call reads (is the run active? was the param
# logged?): it must not hang on a bucket that is slow or down (design
# property 8). Explicitly fresh reads (a name's uniqueness, an id not found
# yet) still wait.
REFRESH_WAIT = 1.0
# How long opening a store waits for a crashed process's spooled batches
# to be uploaded (they go on uploading in the background after that).
RECOVERY_WAIT = 10.0
# A process that wrote to a log checkpoints it at exit once this many log
# objects follow the newest checkpoint, so that a cold reader folds at most
# two (a cold search stays within 10 requests, docs/performance.md).
EXIT_COMPACT_TAIL = 3
# How long that exit step waits for the spool first; a store still
# unreachable then gets no checkpoint from this process.
EXIT_FLUSH_WAIT = 5.0


def experiment_log(eid: str) -> str:
    return f"tracking/exp/{eid}"


# -- the index log: which experiment a run or logged model belongs to ----------


def new_index_state() -> State:
    return {"runs": {}, "models": {}}


def fold_index(state: State, seq: int, entries: list[Entry]) -> State:
    for entry in entries:
        if entry.get("op") == "idx.run":
            state["runs"].setdefault(entry["id"], entry["exp"])
        elif entry.get("op") == "idx.model":
            state["models"].setdefault(entry["id"], entry["exp"])
    return state


# -- checkpoints of an experiment: metric histories go to side objects ---------


def dump_experiment(state: State, side: SideObjects) -> State:
    """The checkpoint form: each run's full metric history as a side object."""
    out = {key: value for key, value in state.items() if key != "runs"}
    runs: dict[str, Any] = {}
    changed: list[str] = []
    merged: list[Any] = []
    for run_id, doc in state["runs"].items():
        copy_doc = dict(doc)
        if doc["hist"]:
            history = merge_history(_readable_side(side, doc["href"]), doc["hist"])
            changed.append(run_id)
            merged.append(history)
        elif doc["href"]:
            copy_doc["href"] = side.keep(doc["href"])
        copy_doc["hist"] = {}
        runs[run_id] = copy_doc
    for run_id, ref in zip(changed, side.put_many(merged), strict=True):
        runs[run_id]["href"] = ref
    out["runs"] = runs
    return out


def _readable_side(side: SideObjects, ref: str | None) -> Any:
    """A run's history as of the last checkpoint; {} (with a warning) if it is damaged.

    The checkpoint being written then holds what is readable, rather than
    no checkpoint ever being written again.
    """
    if not ref:
        return {}
    try:
        return checked_history(side.get(ref), side.url(ref))
    except CorruptObject as exc:
        _warn_damaged_history(exc)
        return {}


def checked_history(data: Any, where: str) -> dict[str, Any]:
    """``data`` if it has a metric history's shape (metric key -> points of
    [value, is_nan, timestamp, step]); else CorruptObject naming ``where``.

    A side object can decode and still be something else (foreign, or
    written by a buggy writer): the readers index into it, so it is
    refused here rather than crash them.
    """
    if isinstance(data, dict) and all(
        isinstance(key, str)
        and isinstance(points, list)
        and all(isinstance(p, list) and len(p) == 4 for p in points)
        for key, points in data.items()
    ):
        return data
    raise CorruptObject(where, "not a metric history")


def _guarded(fold: Callable[[State, int, list[Entry]], State], check: Check, target: Log) -> Any:
    """``fold``, skipping entries in a shape it would fail on (entry_checks.py).

    Each is reported once per process, naming its log object, as an object
    that does not decode is; an error of the fold itself on an entry that
    passed is reported the same way and the rest of the log is still read.
    """
    warned: set[str] = set()

    def report(seq: int, reason: str) -> None:
        where = target.url(target.key(seq))
        if where not in warned:
            warned.add(where)
            log.warning("skipping part of %s: %s", where, reason)
            warn_corrupt(where, reason)

    def guarded(state: State, seq: int, entries: list[Entry]) -> State:
        good = []
        for i, entry in enumerate(entries):
            problem = check(entry)
            if problem is None:
                good.append(entry)
            else:
                report(seq, f"entry {i}: {problem}")
        try:
            return fold(state, seq, good)
        except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
            report(seq, f"an entry the fold cannot apply: {type(exc).__name__}: {exc}")
            return state

    return guarded


def _warn_damaged_history(exc: CorruptObject) -> None:
    # As the log's readers do for what they skip: a log record and a
    # CorruptObjectWarning, both naming the object.
    log.warning("metric history %s is unreadable (%s); left out", exc.where, exc.reason)
    warn_corrupt(exc.where, exc.reason)


def adopt_experiment(state: State, dumped: State) -> None:
    """After a checkpoint: histories now in side objects leave the view's memory.

    The state then looks like what a cold reader loads from the checkpoint,
    and the next checkpoint merges and writes only the runs that logged
    since, not every run again.
    """
    runs = state["runs"]
    for run_id, doc in dumped["runs"].items():
        live = runs.get(run_id)
        if live is not None:
            live["href"], live["hist"] = doc["href"], doc["hist"]


# A stored point is [value, is_nan, timestamp, step]: order by step, timestamp, value.
_POINT_ORDER = operator.itemgetter(3, 2, 0, 1)


def merge_history(base: Mapping[str, list[Any]], new: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Union of two histories, each point once, in (step, timestamp, value) order."""
    out: dict[str, Any] = {}
    for key in sorted(set(base) | set(new)):
        points = set(map(tuple, base.get(key, ())))
        points.update(map(tuple, new.get(key, ())))
        out[key] = list(map(list, sorted(points, key=_POINT_ORDER)))
    return out


class _Refresher:
    """Refreshes one view in a background thread; callers wait for it a bounded time.

    A refresh that does not finish within the wait goes on in the
    background while callers answer from the state they have; the next
    caller does not wait for it again. Errors of a refresh that finished in
    time reach the caller, except a store that stayed unreachable through
    every retry: then the caller answers from what it has, with a warning.
    """

    def __init__(self, view: LogView[State]) -> None:
        self.view = view
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0
        self._error: BaseException | None = None
        self._warned = 0.0

    def _run(self, max_age: float) -> None:
        try:
            self.view.refresh(max_age)
        except BaseException as exc:
            self._error = exc

    def start(self, max_age: float, wait: float) -> tuple[threading.Thread, float]:
        """Start a refresh unless one is running; (its thread, seconds left to wait for it)."""
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._error = None
                thread = self._thread = threading.Thread(
                    target=self._run, args=(max_age,), name="mlflow-bucket-refresh", daemon=True
                )
                self._deadline = time.monotonic() + wait
                thread.start()
            return thread, self._deadline - time.monotonic()

    def refresh(self, max_age: float, wait: float) -> None:
        thread, remaining = self.start(max_age, wait)
        if remaining > 0:
            thread.join(remaining)
        if thread.is_alive():
            return
        with self._lock:
            error, self._error = self._error, None
        if error is None:
            return
        if isinstance(error, TransientError | OSError):
            now = time.monotonic()
            if now - self._warned > 60 or not self._warned:
                self._warned = now
                log.warning(
                    "%s: cannot list news (%s); answering from what this process has",
                    self.view.log,
                    error,
                )
            return
        raise error


class Backend:
    """Everything one process keeps for one store URI."""

    def __init__(self, uri: str, settings: Settings, store: ObjectStore | None = None) -> None:
        self.uri = uri
        self.settings = settings
        self.store = store or open_store(uri)
        ensure_marker(self.store)
        # Where experiments created by this process keep their artifacts (the
        # configured artifact_root, else this default). An experiment keeps the root
        # it was created with (its exp.create entry); experiments whose entry names
        # none (Default, and those of writers before `root` existed) use the default, so
        # that every reader finds the same place whatever its own settings.
        self.default_artifact_root = f"{self.store.uri}/artifacts"
        self.artifact_root = self.default_artifact_root
        self.writer = uuid.uuid4().hex[:12]
        self.clock = ClockOffset(self.store)
        self.clock.start()
        self.cache: ObjectCache | None = (
            ObjectCache.for_store(self.store, settings.cache_dir)
            if self.store.scheme in ("gs", "s3")
            else None
        )
        self.compaction = Compaction(threshold=settings.compact_threshold)
        self._lock = threading.RLock()
        self._spool: Spool | None = None
        # One folder per store, also under $MLFLOW_BUCKET_SPOOL_DIR: a dead
        # process's batches must only ever be replayed into their own store.
        self.spool_dir: Path = (
            settings.spool_dir / store_id(self.store)
            if settings.spool_dir is not None
            else default_spool_dir(self.store)
        )
        self.experiments = self._view(
            EXPERIMENTS_LOG, fold_experiments, new_experiments_state, check_experiments_entry
        )
        self.index = self._view(INDEX_LOG, fold_index, new_index_state, check_index_entry)
        self._exp_views: dict[str, LogView[State]] = {}
        self._refreshers: dict[int, _Refresher] = {}
        # A copy of the experiments state as of `_experiments_seq`: callers
        # read it without a lock while a refresh may fold into the original.
        self._experiments_copy: State | None = None
        self._experiments_seq = -1
        # Entries this process wrote and the view may not have folded yet,
        # per experiment and run/model: [batch id, entry, log number it
        # landed at or before (None: not known to have landed)].
        self._own: dict[str, dict[tuple[str, str], list[list[Any]]]] = {}
        # Per run/model: (the view doc's seq it was built on, view doc + own entries).
        self._local: dict[str, dict[tuple[str, str], tuple[int, dict[str, Any]]]] = {}
        # Runs and models this process created: their experiment, known at once.
        self.own_index: dict[str, str] = {}
        # Logs this process wrote to: checkpointed at exit if their tail grew.
        self._written: set[str] = set()
        self._ts_lock = threading.Lock()
        self._last_ts = 0
        if self._spooled_elsewhere():
            # A crashed process may have left batches for this store: the
            # spool's opening claims them and its flusher uploads them,
            # whether or not this process writes anything itself. Waiting
            # a little for that lets this process's first reads show them.
            self.spool.flush(RECOVERY_WAIT)

    def _spooled_elsewhere(self) -> bool:
        try:
            return any(p.is_dir() and not p.name.startswith(".") for p in self.spool_dir.iterdir())
        except OSError:
            return False

    def _log(self, root: str) -> Log:
        return Log(self.store, root, cache=self.cache)

    def _view(self, root: str, fold: Any, initial: Any, check: Check, **kw: Any) -> LogView[State]:
        log = self._log(root)
        return LogView(log, _guarded(fold, check, log), initial, compaction=self.compaction, **kw)

    @property
    def spool(self) -> Spool:
        with self._lock:
            if self._spool is None:
                s = self.settings
                # Before the spool's exit hook, so that it runs after it:
                # checkpoints what the spool uploaded.
                _checkpoint_at_exit_hook()
                self._spool = Spool(
                    self.spool_dir,
                    self.store,
                    flush_interval=s.flush_interval,
                    sync=s.sync,
                    cache=self.cache,
                )
                # After the spool's own exit hook, so that it runs first.
                _finish_mlflow_at_exit_hook()
            return self._spool

    # -- reading ------------------------------------------------------------

    def _refresh(self, view: LogView[State], fresh: bool, wait: float | None = None) -> None:
        """Bring ``view`` up to date: at once if ``fresh``, else within bounds.

        Not fresh: at most one listing per refresh interval, and no caller
        waits more than ``wait`` (default REFRESH_WAIT) for it (the first
        load excepted).
        """
        if fresh:
            view.refresh(0)
            return
        interval = self.settings.refresh_interval
        if view.seq < 0:
            view.refresh(interval)
            return
        if not view.due(interval):
            return
        self._refresher(view).refresh(interval, REFRESH_WAIT if wait is None else wait)

    def _refresher(self, view: LogView[State]) -> _Refresher:
        with self._lock:
            refresher = self._refreshers.get(id(view))
            if refresher is None:
                refresher = self._refreshers[id(view)] = _Refresher(view)
            return refresher

    def warm_up(self, eids: list[str]) -> None:
        """Start bringing these experiments' views up to date, in the background.

        A search reads the experiments log, then each experiment's: their
        listings (or cold loads) then overlap instead of queueing; the reads
        themselves wait as usual (_refresh).
        """
        interval = self.settings.refresh_interval
        for eid in eids:
            view = self.experiment_view(eid)
            if view.due(interval):
                self._refresher(view).start(interval, REFRESH_WAIT)

    def experiment_view(self, eid: str) -> LogView[State]:
        with self._lock:
            view = self._exp_views.get(eid)
            if view is None:
                view = self._exp_views[eid] = self._view(
                    experiment_log(eid),
                    fold_experiment,
                    new_experiment_state,
                    check_run_entry,
                    dump=dump_experiment,
                    adopt=adopt_experiment,
                )
            return view

    def experiments_state(self, fresh: bool = False, wait: float | None = None) -> State:
        """The experiments state; a copy, so callers may read it without a lock."""
        view = self.experiments
        self._refresh(view, fresh, wait)
        with view.lock:
            if self._experiments_copy is None or self._experiments_seq != view.seq:
                self._experiments_copy = copy.deepcopy(view.state)
                self._experiments_seq = view.seq
            return self._experiments_copy

    def _loaded_experiment_of(self, kind: str, ident: str) -> str | None:
        """The experiment of a run/model found in a view already loaded (no request).

        Its entries go to its experiment's log only, so a view holding its
        create holds the answer; a UI that searched an experiment then
        opens its runs without loading the index.
        """
        with self._lock:
            views = [(eid, view) for eid, view in self._exp_views.items() if view.seq >= 0]
        for eid, view in views:
            with view.lock:
                doc = view.state[kind].get(ident)
                if doc is not None and ("user" in doc if kind == "runs" else "name" in doc):
                    return eid
        return None

    def _indexed(self, kind: str, ident: str) -> str | None:
        if ident in self.own_index:
            return self.own_index[ident]
        found = self._loaded_experiment_of(kind, ident)
        if found is not None:
            return found
        for fresh in (False, True):
            # Not found: created elsewhere a moment ago? Look once more, now.
            self._refresh(self.index, fresh)
            with self.index.lock:
                eid: str | None = self.index.state[kind].get(ident)
            if eid is not None:
                return eid
        return None

    def experiment_of_run(self, run_id: str) -> str | None:
        return self._indexed("runs", run_id)

    def experiment_of_model(self, model_id: str) -> str | None:
        return self._indexed("models", model_id)

    @contextmanager
    def experiment_state(
        self, eid: str, fresh: bool = False, wait: float | None = None
    ) -> Iterator[State]:
        """The experiment's state with this process's own writes overlaid.

        Held under the view's lock: the fold mutates the state in place.
        ``wait``: see _refresh.
        """
        view = self.experiment_view(eid)
        self._refresh(view, fresh, wait)
        with view.lock, self._lock:
            state = view.state
            local = self._local_docs(eid, state, view.seq)
            if not local:
                yield state
                return
            out = dict(state)
            for kind in ("runs", "models"):
                mine = {k: doc for (kd, k), doc in local.items() if kd == kind}
                if mine:
                    # A view, not a copy: copying every run of the experiment
                    # on each logging call made logging slow down as the
                    # experiment grew. Readers only read it.
                    out[kind] = ChainMap(mine, state[kind])
            yield out

    def _landed(self, eid: str) -> tuple[set[str], int]:
        """(batches for ``eid``'s log still queued, a number every other one landed at or below).

        Read in this order: a batch leaves the queue only after it was
        appended and the spool's log noted the number.
        """
        if self._spool is None:
            return set(), 0
        key = experiment_log(eid)
        pending = self._spool.pending_batches(key)
        return pending, self._spool.log(key).known_tail

    def _local_docs(
        self, eid: str, state: State, view_seq: int
    ) -> dict[tuple[str, str], dict[str, Any]]:
        own = self._own.get(eid)
        if not own:
            return {}
        local = self._local.setdefault(eid, {})
        out: dict[tuple[str, str], dict[str, Any]] = {}
        marks: tuple[set[str], int] | None = None
        for ident, items in list(own.items()):
            kind, key = ident
            base_doc = state[kind].get(key)
            base_seq = base_doc.get("seq", 0) if base_doc else 0
            cached = local.get(ident)
            if cached is None or cached[0] != base_seq:
                # The view folded something of this run (ours or another
                # writer's): forget our entries it has, rebuild from its doc
                # plus the rest (the fold is idempotent).
                if marks is None:
                    marks = self._landed(eid)
                pending, tail = marks
                for item in items:
                    if item[2] is None and item[0] not in pending:
                        item[2] = tail
                items[:] = [item for item in items if item[2] is None or item[2] > view_seq]
                if not items:
                    del own[ident]
                    local.pop(ident, None)
                    continue
                doc_state = new_experiment_state()
                if base_doc is not None:
                    doc_state[kind][key] = copy_doc(base_doc)
                fold_experiment(doc_state, base_seq, [item[1] for item in items])
                cached = local[ident] = (base_seq, doc_state[kind].get(key, {}))
            if cached[1]:
                out[ident] = cached[1]
        return out

    def read_history(self, eid: str, ref: str) -> dict[str, Any]:
        """A run's metric history as of its experiment's checkpoint ({} if damaged, warned)."""
        log = self.experiment_view(eid).log
        try:
            history = checked_history(log.read_side(ref), log.url(log.side_key(ref)))
        except CorruptObject as exc:
            _warn_damaged_history(exc)
            return {}
        return history

    # -- writing ------------------------------------------------------------

    def append_experiments(self, entries: list[Entry]) -> int:
        """Synchronously append to the experiments log; the view sees it at once."""
        self._written.add(EXPERIMENTS_LOG)
        return self.experiments.append(entries)

    def write_run_entries(self, eid: str, entries: list[Entry]) -> None:
        """Queue entries of runs/models of experiment ``eid``; visible here at once."""
        stamped = [{**e, "w": self.writer} for e in entries]
        batch = self.spool.enqueue(experiment_log(eid), stamped)
        with self._lock:
            self._written.add(experiment_log(eid))
            own = self._own.setdefault(eid, {})
            local = self._local.setdefault(eid, {})
            for entry in stamped:
                kind = "models" if entry["op"].startswith("model.") else "runs"
                ident = (kind, entry["id"])
                own.setdefault(ident, []).append([batch, entry, None])
                cached = local.get(ident)
                if cached is not None:
                    # Fold just this entry onto the overlay: logging in a
                    # loop stays linear.
                    doc_state = new_experiment_state()
                    doc_state[kind][entry["id"]] = cached[1]
                    fold_experiment(doc_state, cached[0], [entry])
                    doc = doc_state[kind].get(entry["id"])
                    if doc is None:  # a purge: rebuilt from the view on the next read
                        local.pop(ident, None)
                        continue
                    doc["lrev"] = doc.get("lrev", 0) + 1
                    local[ident] = (cached[0], doc)

    def write_index(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.own_index[entry["id"]] = entry["exp"]
        self._written.add(INDEX_LOG)
        self.spool.enqueue(INDEX_LOG, entries)

    def publish_soon(self) -> None:
        """Start uploading what is queued without waiting for the flush interval.

        For entries other processes look up by id as soon as the call
        returns: a run id handed to a child process (``mlflow run`` does
        that) must be found there, not after the next interval.
        """
        if self._spool is not None:
            self._spool.wake()

    def now_ms(self) -> int:
        """The store's time for a register's timestamp, never less than the last one given.

        The clock correction is re-measured now and then, and the local
        clock may step back: without this, a later write of this process
        could lose to its own earlier one (a run's FINISHED to its RUNNING).
        """
        with self._ts_lock:
            self._last_ts = max(self.clock.now_ms(), self._last_ts)
            return self._last_ts

    def flush(self, timeout: float | None = None) -> bool:
        return self._spool.flush(timeout) if self._spool is not None else True

    def prefetch_histories(self, eid: str, refs: list[str]) -> None:
        """Fetch these metric histories into the local cache, in parallel."""
        self.experiment_view(eid).log.prefetch_sides(refs)

    def finish(self, wait: float = EXIT_FLUSH_WAIT) -> None:
        """At exit: upload what is queued, then checkpoint the logs this
        process wrote to whose tail reached EXIT_COMPACT_TAIL objects."""
        with self._lock:
            written = sorted(self._written)
        if not written or not self.flush(wait):
            return
        for key in written:
            if key == EXPERIMENTS_LOG:
                view = self.experiments
            elif key == INDEX_LOG:
                view = self.index
            else:
                view = self.experiment_view(key.rsplit("/", 1)[-1])
            try:
                if view.seq < 0 and self._spool is not None:
                    # Not loaded here (the index, usually): load it only if
                    # its tail is long enough to be worth a checkpoint.
                    newest = max((seq for seq, _ in view.log.checkpoints()), default=0)
                    if self._spool.log(key).known_tail - newest < EXIT_COMPACT_TAIL:
                        continue
                view.compact(EXIT_COMPACT_TAIL)
            except Exception as exc:  # exiting: never raise for the store
                log.info("no checkpoint of %s at exit: %s", view.log, exc)


_BACKENDS: dict[str, Backend] = {}
_BACKENDS_LOCK = threading.Lock()
# Not _BACKENDS_LOCK: hooks are registered from Backend.__init__, which
# backend_for runs under that lock.
_HOOKS_LOCK = threading.Lock()
_exit_hooked = False


def _finish_mlflow_at_exit() -> None:
    """Do MLflow's end-of-process writes while they can still be uploaded.

    MLflow ends the active run (status FINISHED) and drains its async
    logging queue in plain atexit hooks. Those run after threading's exit
    hooks, where the spool uploads what is queued, and after the cloud
    clients' sessions were closed by their finalizers: writes made then
    would only reach the bucket when the next process opens the store. So
    do the same here, first, for a run logged to one of our stores;
    MLflow's own hooks then find nothing left to do.
    """
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None:
        return
    with contextlib.suppress(Exception):
        if fluent.get_tracking_uri() not in _BACKENDS:
            return
        fluent.flush_async_logging()
    with contextlib.suppress(Exception):
        if fluent.active_run() is not None:
            fluent.end_run()


def _finish_mlflow_at_exit_hook() -> None:
    global _exit_hooked
    with _HOOKS_LOCK:
        if _exit_hooked:
            return
        _exit_hooked = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:  # every CPython since 3.9
        register(_finish_mlflow_at_exit)


def _finish_all() -> None:
    with _BACKENDS_LOCK:
        backends = list(_BACKENDS.values())
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.finish()


def close_backends() -> None:
    """What a process does at exit (upload, checkpoint, release the spool), then
    forget every Backend.

    Tests use it to end a "process"; the exit hook itself keeps the
    Backends, as MLflow's own exit hooks may still use them.
    """
    _finish_all()
    with _BACKENDS_LOCK:
        backends = list(_BACKENDS.values())
        _BACKENDS.clear()
    for backend in backends:
        if backend._spool is not None:
            backend._spool.close(EXIT_FLUSH_WAIT)


_checkpoint_hooked = False


def _checkpoint_at_exit_hook() -> None:
    global _checkpoint_hooked
    with _HOOKS_LOCK:
        if _checkpoint_hooked:
            return
        _checkpoint_hooked = True
    # threading's exit hooks run newest first, before concurrent.futures
    # refuses work (put_many needs it); see spool._on_exit.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:  # every CPython since 3.9
        register(_finish_all)


def backend_for(uri: str) -> Backend:
    """The process's one Backend for ``uri``."""
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(uri)
        if backend is None:
            # Settings, storage options and artifact root from the environment and
            # the project's configuration files (docs/configuration.md).
            setup = store_setup(uri)
            store = open_store(uri, **setup.storage_options) if setup.storage_options else None
            settings = setup.settings
            if compat.in_mlflow_server() and "MLFLOW_BUCKET_SYNC" not in os.environ:
                # `mlflow server` runs several worker processes, and a client's next
                # call (log_batch after create_run) may reach another one: each write
                # is in the bucket before the server answers, so whichever worker
                # gets the next call finds it (docs/ui.md).
                settings = dataclasses.replace(settings, sync=True)
            backend = Backend(uri, settings, store)
            if setup.artifact_root:
                backend.artifact_root = setup.artifact_root
            _BACKENDS[uri] = backend
        return backend


def forget_backends() -> None:
    """Drop every Backend (tests use fresh ones); flushes their spools first."""
    with _BACKENDS_LOCK:
        for backend in _BACKENDS.values():
            backend.flush(timeout=30)
        _BACKENDS.clear()
