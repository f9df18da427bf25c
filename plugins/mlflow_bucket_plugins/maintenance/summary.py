"""``mlflow-bucket status``: experiments, run counts and last activity, from the logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_bucket.log import Compaction, ObjectCache
from mlflow_bucket.storage import ObjectStore

from ..tracking.fold import register_value
from .health import recorded
from .logs import EXPERIMENTS, REGISTRY, experiment_spec


@dataclass(frozen=True)
class ExperimentSummary:
    id: str
    name: str
    stage: str  # "active" or "deleted"
    runs: int  # live runs (not deleted)
    deleted_runs: int
    last_activity_ms: int | None  # the latest run start/end or experiment change


@dataclass(frozen=True)
class StoreSummary:
    experiments: list[ExperimentSummary]
    registered_models: int
    # What the reads skipped or ignored, one message per object naming it:
    # damaged objects, objects past a log's end (docs/format.md, "Gaps").
    warnings: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(e.runs for e in self.experiments)


def _latest(*values: Any) -> int | None:
    numbers = [int(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


def _experiment(eid: str, doc: dict[str, Any], state: dict[str, Any]) -> ExperimentSummary:
    live = deleted = 0
    latest = _latest(doc.get("mtime"), doc.get("ctime"))
    for run in state.get("runs", {}).values():
        if "user" not in run:  # entries whose run.create has not landed yet
            continue
        if register_value(run.get("stage"), "active") == "deleted":
            deleted += 1
        else:
            live += 1
        status = run.get("status")
        latest = _latest(
            latest,
            run.get("start"),
            register_value(run.get("end")),
            status[1] if isinstance(status, list) and len(status) > 1 else None,
        )
    return ExperimentSummary(eid, doc.get("name", ""), doc.get("stage", ""), live, deleted, latest)


def summarize(
    store: ObjectStore,
    *,
    cache: ObjectCache | None = None,
    deleted: bool = False,
    progress: Callable[[str], None] = lambda eid: None,
) -> StoreSummary:
    """Read the experiments log, each experiment's log and the registry (no writes)."""
    compaction = Compaction(threshold=0, gc=False)
    with recorded() as warned:
        _, exps, _ = EXPERIMENTS.checkpoints(store, cache, compaction).read()
        out: list[ExperimentSummary] = []
        for eid, doc in sorted(exps["exps"].items(), key=lambda kv: (len(kv[0]), kv[0])):
            if doc.get("stage") == "deleted" and not deleted:
                continue
            progress(eid)
            _, state, _ = experiment_spec(eid).checkpoints(store, cache, compaction).read()
            out.append(_experiment(eid, doc, state))
        _, registry, _ = REGISTRY.checkpoints(store, cache, compaction).read()
        models = sum(1 for m in registry.get("models", {}).values() if m.get("name"))
    return StoreSummary(out, models, warned)
