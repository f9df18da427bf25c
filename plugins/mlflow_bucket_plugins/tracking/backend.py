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

import copy
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow_bucket.config import Settings
from mlflow_bucket.log import ClockOffset, Compaction, Log, LogView, ObjectCache, SideObjects, Spool
from mlflow_bucket.marker import ensure_marker
from mlflow_bucket.storage import ObjectStore, open_store

from .fold import (
    Entry,
    State,
    fold_experiment,
    fold_experiments,
    new_experiment_state,
    new_experiments_state,
)

EXPERIMENTS_LOG = "tracking/experiments"
INDEX_LOG = "tracking/index"


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
            history = merge_history(side.get(doc["href"]) if doc["href"] else {}, doc["hist"])
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


def merge_history(base: Mapping[str, list[Any]], new: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Union of two histories, each point once, in (step, timestamp, value) order."""
    out: dict[str, Any] = {}
    for key in sorted(set(base) | set(new)):
        points = {tuple(p) for p in base.get(key, [])} | {tuple(p) for p in new.get(key, [])}
        out[key] = [list(p) for p in sorted(points, key=lambda p: (p[3], p[2], p[0], p[1]))]
    return out


class Backend:
    """Everything one process keeps for one store URI."""

    def __init__(self, uri: str, settings: Settings, store: ObjectStore | None = None) -> None:
        self.uri = uri
        self.settings = settings
        self.store = store or open_store(uri)
        ensure_marker(self.store)
        self.artifact_root = f"{self.store.uri}/artifacts"
        self.writer = uuid.uuid4().hex[:12]
        self.clock = ClockOffset(self.store)
        self.cache: ObjectCache | None = (
            ObjectCache.for_store(self.store, settings.cache_dir)
            if self.store.scheme in ("gs", "s3")
            else None
        )
        self.compaction = Compaction(threshold=settings.compact_threshold)
        self._lock = threading.RLock()
        self._spool: Spool | None = None
        self.experiments = self._view(EXPERIMENTS_LOG, fold_experiments, new_experiments_state)
        self.index = self._view(INDEX_LOG, fold_index, new_index_state)
        self._exp_views: dict[str, LogView[State]] = {}
        # Runs this process wrote to, per experiment: the entries it wrote
        # and a doc = the view's doc at `base` + those entries.
        self._own: dict[str, dict[tuple[str, str], list[Entry]]] = {}
        self._local: dict[str, dict[tuple[str, str], tuple[int, dict[str, Any]]]] = {}
        # Runs and models this process created: their experiment, known at once.
        self.own_index: dict[str, str] = {}

    def _log(self, root: str) -> Log:
        return Log(self.store, root, cache=self.cache)

    def _view(self, root: str, fold: Any, initial: Any, **kw: Any) -> LogView[State]:
        return LogView(self._log(root), fold, initial, compaction=self.compaction, **kw)

    @property
    def spool(self) -> Spool:
        with self._lock:
            if self._spool is None:
                s = self.settings
                self._spool = Spool(
                    s.spool_dir,
                    self.store,
                    flush_interval=s.flush_interval,
                    sync=s.sync,
                    cache=self.cache,
                )
            return self._spool

    # -- reading ------------------------------------------------------------

    def experiment_view(self, eid: str) -> LogView[State]:
        with self._lock:
            view = self._exp_views.get(eid)
            if view is None:
                view = self._exp_views[eid] = self._view(
                    experiment_log(eid),
                    fold_experiment,
                    new_experiment_state,
                    dump=dump_experiment,
                )
            return view

    def experiments_state(self, fresh: bool = False) -> State:
        return self.experiments.refresh(0 if fresh else self.settings.refresh_interval)

    def experiment_of_run(self, run_id: str) -> str | None:
        if run_id in self.own_index:
            return self.own_index[run_id]
        state = self.index.refresh(self.settings.refresh_interval)
        eid = state["runs"].get(run_id)
        if eid is None:
            # A run created elsewhere a moment ago: look once more, now.
            eid = self.index.refresh(0)["runs"].get(run_id)
        return eid

    def experiment_of_model(self, model_id: str) -> str | None:
        if model_id in self.own_index:
            return self.own_index[model_id]
        eid = self.index.refresh(self.settings.refresh_interval)["models"].get(model_id)
        if eid is None:
            eid = self.index.refresh(0)["models"].get(model_id)
        return eid

    @contextmanager
    def experiment_state(self, eid: str, fresh: bool = False) -> Iterator[State]:
        """The experiment's state with this process's own writes overlaid.

        Held under the view's lock: the fold mutates the state in place.
        """
        view = self.experiment_view(eid)
        view.refresh(0 if fresh else self.settings.refresh_interval)
        with view.lock, self._lock:
            state = view.state
            local = self._local_docs(eid, state)
            if not local:
                yield state
                return
            out = dict(state)
            for kind in ("runs", "models"):
                mine = {k: doc for (kd, k), doc in local.items() if kd == kind}
                if mine:
                    out[kind] = {**state[kind], **mine}
            yield out

    def _local_docs(self, eid: str, state: State) -> dict[tuple[str, str], dict[str, Any]]:
        own = self._own.get(eid)
        if not own:
            return {}
        local = self._local.setdefault(eid, {})
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for (kind, key), entries in own.items():
            base_doc = state[kind].get(key)
            base_seq = base_doc.get("seq", 0) if base_doc else 0
            cached = local.get((kind, key))
            if cached is None or cached[0] != base_seq:
                # Someone else's entries for it were folded: rebuild from the
                # view's doc plus our own entries (the fold is idempotent).
                doc_state = new_experiment_state()
                if base_doc is not None:
                    doc_state[kind][key] = copy.deepcopy(base_doc)
                fold_experiment(doc_state, base_seq, entries)
                cached = local[(kind, key)] = (base_seq, doc_state[kind].get(key, {}))
            if cached[1]:
                out[(kind, key)] = cached[1]
        return out

    # -- writing ------------------------------------------------------------

    def append_experiments(self, entries: list[Entry]) -> int:
        """Synchronously append to the experiments log; the view sees it at once."""
        return self.experiments.append(entries)

    def write_run_entries(self, eid: str, entries: list[Entry]) -> None:
        """Queue entries of runs/models of experiment ``eid``; visible here at once."""
        stamped = [{**e, "w": self.writer} for e in entries]
        self.spool.enqueue(experiment_log(eid), stamped)
        with self._lock:
            own = self._own.setdefault(eid, {})
            local = self._local.setdefault(eid, {})
            for entry in stamped:
                kind = "models" if entry["op"].startswith("model.") else "runs"
                ident = (kind, entry["id"])
                own.setdefault(ident, []).append(entry)
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
        self.spool.enqueue(INDEX_LOG, entries)

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def flush(self, timeout: float | None = None) -> bool:
        return self._spool.flush(timeout) if self._spool is not None else True


_BACKENDS: dict[str, Backend] = {}
_BACKENDS_LOCK = threading.Lock()


def backend_for(uri: str) -> Backend:
    """The process's one Backend for ``uri``."""
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(uri)
        if backend is None:
            backend = _BACKENDS[uri] = Backend(uri, Settings.from_env())
        return backend


def forget_backends() -> None:
    """Drop every Backend (tests use fresh ones); flushes their spools first."""
    with _BACKENDS_LOCK:
        for backend in _BACKENDS.values():
            backend.flush(timeout=30)
        _BACKENDS.clear()
