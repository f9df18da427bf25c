"""LogView.compact (a writer's checkpoint at exit) and adopt (the state takes its dumped form)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from log_helpers import CountingStore, fold, fold_all, initial

from mlflow_bucket.log import Checkpoints, Compaction, Log, LogView, SideObjects
from mlflow_bucket.storage import ObjectStore, PermissionDenied

BACKENDS = ["memory", "local"]


def test_compact_checkpoints_a_tail_at_the_threshold_and_not_below(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    view = LogView(log, fold, initial, compaction=Compaction(threshold=32))
    for i in range(2):
        log.append([{"k": "a", "v": i}])
    assert view.compact(3) is False
    assert log.checkpoints() == []
    log.append([{"k": "b", "v": 9}])
    assert view.compact(3) is True
    assert [seq for seq, _ in log.checkpoints()] == [3]
    assert view.compact(3) is False  # nothing new since
    # A cold reader starts from it and folds nothing.
    seq, state, base = Checkpoints(Log(store, "exp/7", cache=None), fold, initial).read()
    assert (seq, base.seq) == (3, 3) and state == fold_all(log)


def test_compact_sees_a_checkpoint_written_by_someone_else(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    counting = CountingStore(store)
    view = LogView(Log(counting, "exp/7", cache=None), fold, initial)
    for i in range(3):
        log.append([{"k": "a", "v": i}])
    view.refresh(0)
    Checkpoints(Log(store, "exp/7", cache=None), fold, initial).compact()
    log.append([{"k": "a", "v": 3}])
    counting.reset()
    assert view.compact(3) is False  # one object after the other's checkpoint
    assert "create" not in counting.reset() and [s for s, _ in log.checkpoints()] == [3]


def _split(state: dict[str, Any], side: SideObjects) -> dict[str, Any]:
    """A dump that moves the values to a side object, keeping its reference."""
    out = {k: v for k, v in state.items() if k != "values"}
    out["values"] = {}
    out["ref"] = side.put(state["values"]) if state["values"] else state.get("ref")
    return out


def test_adopt_gives_the_state_its_dumped_form_after_a_checkpoint(store: ObjectStore) -> None:
    adopted: list[dict[str, Any]] = []

    def adopt(state: dict[str, Any], doc: dict[str, Any]) -> None:
        adopted.append(doc)
        state["values"] = {}
        state["ref"] = doc["ref"]

    log = Log(store, "exp/7", cache=None)
    view = LogView(log, fold, initial, dump=_split, adopt=adopt, compaction=Compaction(threshold=2))
    log.append([{"k": "a", "v": 1}])
    view.refresh(0)
    assert adopted == [] and view.state["values"] == {"a": 1}
    log.append([{"k": "b", "v": 2}])
    view.refresh(0)  # two objects after no checkpoint: checkpoint, then adopt
    assert [s for s, _ in log.checkpoints()] == [2]
    assert view.state["values"] == {} and log.read_side(view.state["ref"]) == {"a": 1, "b": 2}
    assert len(adopted) == 1


def test_no_adopt_when_the_checkpoint_could_not_be_written(store: ObjectStore) -> None:
    calls = Counter[str]()

    def adopt(state: dict[str, Any], doc: dict[str, Any]) -> None:
        calls["adopt"] += 1

    class ReadOnly(CountingStore):
        def before(self, op: str, key: str) -> None:
            super().before(op, key)
            if op in ("put", "create") and "/ckpt/" in key:
                raise PermissionDenied("read-only", operation=op, url=key)

    log = Log(store, "exp/7", cache=None)
    for i in range(3):
        log.append([{"k": "a", "v": i}])
    view = LogView(
        Log(ReadOnly(store), "exp/7", cache=None), fold, initial, dump=_split, adopt=adopt
    )
    assert view.compact(1) is False
    assert calls["adopt"] == 0 and view.state["values"] == {"a": 2}
