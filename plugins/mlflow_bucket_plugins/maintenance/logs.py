"""The logs a store holds, each with the fold that reads it.

The tracking store keeps one log of experiments, one index, and one log per
experiment; the registry one log (docs/format.md). Maintenance reads and
checkpoints each with the same fold, dump and entry checks as the stores
themselves, so a checkpoint written here is the one a store would write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow_bucket.log import Checkpoints, Compaction, Log, ObjectCache
from mlflow_bucket.storage import ObjectStore

from ..registry.fold import (
    REGISTRY_LOG,
    dump_registry,
    fold_registry,
    load_registry,
    new_registry_state,
)
from ..tracking.backend import (
    EXPERIMENTS_LOG,
    INDEX_LOG,
    _guarded,
    dump_experiment,
    experiment_log,
    fold_index,
    new_index_state,
)
from ..tracking.entry_checks import (
    check_experiments_entry,
    check_index_entry,
    check_run_entry,
)
from ..tracking.fold import (
    fold_experiment,
    fold_experiments,
    new_experiment_state,
    new_experiments_state,
)

EXPERIMENT_LOGS = "tracking/exp/"


@dataclass(frozen=True)
class LogSpec:
    """One log and how to fold it."""

    root: str
    kind: str  # "experiments", "index", "experiment" or "registry"
    fold: Callable[..., Any]
    initial: Callable[[], Any]
    check: Callable[[Any], str | None] | None = None
    dump: Callable[..., Any] | None = None
    load: Callable[[Any], Any] | None = None

    def checkpoints(
        self, store: ObjectStore, cache: ObjectCache | None, compaction: Compaction
    ) -> Checkpoints[Any]:
        log = Log(store, self.root, cache=cache)
        fold = _guarded(self.fold, self.check, log) if self.check is not None else self.fold
        return Checkpoints(
            log, fold, self.initial, dump=self.dump, load=self.load, compaction=compaction
        )


EXPERIMENTS = LogSpec(EXPERIMENTS_LOG, "experiments", fold_experiments, new_experiments_state,
                      check_experiments_entry)  # fmt: skip
INDEX = LogSpec(INDEX_LOG, "index", fold_index, new_index_state, check_index_entry)
REGISTRY = LogSpec(REGISTRY_LOG, "registry", fold_registry, new_registry_state,
                   dump=dump_registry, load=load_registry)  # fmt: skip


def experiment_spec(eid: str) -> LogSpec:
    return LogSpec(experiment_log(eid), "experiment", fold_experiment, new_experiment_state,
                   check_run_entry, dump=dump_experiment)  # fmt: skip


def experiment_ids(store: ObjectStore) -> list[str]:
    """Every experiment that has a log (one listing), in numeric order."""
    ids = [p[len(EXPERIMENT_LOGS) :].strip("/") for p in store.list_prefixes(EXPERIMENT_LOGS)]
    return sorted((i for i in ids if i), key=lambda i: (len(i), i))


def all_logs(store: ObjectStore) -> list[LogSpec]:
    """Every log in the store: experiments, index, each experiment's, the registry."""
    return [EXPERIMENTS, INDEX, *map(experiment_spec, experiment_ids(store)), REGISTRY]
