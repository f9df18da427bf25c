"""``mlflow-bucket gc``: delete what the checkpoints made unnecessary.

The deletion itself is the log layer's own ``Checkpoints.gc`` (the rules
are in docs/format.md, "Garbage collection"), the one every compacting
process runs. ``plan`` applies the same rules without deleting, for
``--dry-run``; a test checks that the two agree.

Data of permanently deleted runs (``mlflow gc`` purges them) leaves the
store this way: once a checkpoint is written after the purge, the run's
entries are only in folded log objects and its metric history only in a
side object no checkpoint refers to, and both go once older than the
retention window. (``mlflow gc`` deletes the run's artifacts itself.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from mlflow_bucket.log import Compaction, GcReport, ObjectCache
from mlflow_bucket.log.checkpoint import _older
from mlflow_bucket.storage import ObjectInfo, ObjectStore

from .health import recorded
from .logs import LogSpec

# An appender lists the log again after pausing this long (Log.relist_after,
# 60 s) before it creates the next number; gc must leave log objects alone
# for longer than that, with a margin.
MIN_RETENTION = 120.0


@dataclass(frozen=True)
class GcPlan:
    root: str
    checkpoint: int  # the newest readable checkpoint the plan relies on (0: none)
    log_objects: list[ObjectInfo] = field(default_factory=list)
    checkpoints: list[ObjectInfo] = field(default_factory=list)
    side_objects: list[ObjectInfo] = field(default_factory=list)
    # Log objects after the newest checkpoint: a compaction first would fold
    # them, and gc could then free what they replace.
    unfolded: int = 0

    @property
    def objects(self) -> list[ObjectInfo]:
        return [*self.log_objects, *self.checkpoints, *self.side_objects]

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)


def check_retention(retention: float) -> None:
    if retention < MIN_RETENTION:
        raise ValueError(
            f"a retention of {retention:g} s is too short: a writer may pause up to 60 s between "
            f"choosing a log number and creating it; use at least {MIN_RETENTION:g} s"
        )


def plan(
    store: ObjectStore, spec: LogSpec, retention: float, *, cache: ObjectCache | None = None
) -> GcPlan:
    """What ``Checkpoints.gc`` would delete from this log now (nothing is deleted)."""
    check_retention(retention)
    # What the listings skip is logged, one line each (health.recorded).
    with recorded():
        return _plan(store, spec, retention, cache)


def _plan(store: ObjectStore, spec: LogSpec, retention: float, cache: ObjectCache | None) -> GcPlan:
    checkpoints = spec.checkpoints(store, cache, Compaction(retention=retention))
    log = checkpoints.log
    cutoff = store.server_time() - timedelta(seconds=retention)
    listed = log.checkpoints()
    objects = list(log._listed(log.log_prefix, 0))
    # The true tail: what lies past an uncovered gap is not the log's (docs/format.md).
    top = log.reachable_tail(objects)
    readable = checkpoints._readable(listed, checkpoints.kept())
    if not readable:
        return GcPlan(spec.root, 0, unfolded=sum(1 for seq, _ in objects if seq <= top))
    newest = readable[0][0]
    oldest_kept = readable[-1][0]
    # Log objects go once two readable checkpoints cover them.
    covered = readable[1][0] if len(readable) > 1 else 0
    doomed_log = [
        info for seq, info in objects if seq <= covered and seq < top and _older(info, cutoff)
    ]
    doomed_ckpt = [info for seq, info in listed if seq < oldest_kept]
    remaining = [(seq, info) for seq, info in listed if seq >= oldest_kept]
    referenced: set[str] = set()
    for _, refs in checkpoints._readable(remaining, len(remaining)):
        referenced.update(refs)
    doomed_side = [
        info
        for info in store.list_objects(log.side_prefix)
        if info.key[len(log.side_prefix) :] not in referenced and _older(info, cutoff)
    ]
    return GcPlan(
        spec.root,
        newest,
        doomed_log,
        doomed_ckpt,
        doomed_side,
        unfolded=sum(1 for seq, _ in objects if newest < seq <= top),
    )


def collect(
    store: ObjectStore, spec: LogSpec, retention: float, *, cache: ObjectCache | None = None
) -> GcReport:
    """Delete what the rules allow from this log (the log layer's gc)."""
    check_retention(retention)
    with recorded():
        return spec.checkpoints(store, cache, Compaction(retention=retention)).gc()
