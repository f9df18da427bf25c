"""LogView: an in-memory state that follows the log with at most one LIST per max_age."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from log_helpers import CountingStore, fold, fold_all, fold_upto, initial

from mlflow_bucket.log import Checkpoints, Compaction, Log, LogView
from mlflow_bucket.storage import ObjectStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refresh_picks_up_another_writers_append(store: ObjectStore) -> None:
    view = LogView(Log(store, "exp/7", cache=None), fold, initial)
    assert view.refresh() == initial() and view.seq == 0
    other = Log(store, "exp/7", cache=None)
    other.append([{"k": "a", "v": 1}])
    other.append([{"k": "a", "v": 2}, {"k": "b", "v": 3}])
    state = view.refresh(max_age=0)
    assert view.seq == 2
    assert state["values"] == {"a": 2, "b": 3}
    assert state == fold_all(other)


def test_refresh_lists_at_most_once_per_max_age(store: ObjectStore) -> None:
    counting = CountingStore(store)
    clock = FakeClock()
    view = LogView(Log(counting, "exp/7", cache=None), fold, initial, clock=clock)
    view.refresh()
    counting.reset()
    other = Log(store, "exp/7", cache=None)
    other.append([{"k": "a", "v": 1}])
    # Many threads asking within max_age: no request at all.
    threads = [threading.Thread(target=view.refresh, kwargs={"max_age": 1.0}) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counting.reset() == Counter() and view.seq == 0
    clock.now += 1.5
    threads = [threading.Thread(target=view.refresh, kwargs={"max_age": 1.0}) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One LIST and one GET (the new object) for all eight.
    assert counting.reset() == Counter({"list": 1, "get": 1})
    assert view.seq == 1 and view.state["values"] == {"a": 1}


def test_a_views_own_append_is_visible_at_once(store: ObjectStore) -> None:
    view = LogView(Log(store, "exp/7", cache=None), fold, initial)
    view.refresh()
    seq = view.append([{"claim": "name", "by": "me"}])
    assert view.seq >= seq
    assert view.state["claims"] == {"name": "me"}


def test_a_view_overtaken_by_gc_reloads_from_the_checkpoint(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    view = LogView(
        Log(store, "exp/7", cache=None), fold, initial, compaction=Compaction(threshold=0)
    )
    for i in range(3):
        log.append([{"k": f"k{i}", "v": i}])
    view.refresh(max_age=0)
    assert view.seq == 3
    for i in range(3, 15):
        log.append([{"k": f"k{i % 4}", "v": i}])
    expected = fold_all(log)
    compactor = Checkpoints(log, fold, initial, compaction=Compaction(retention=-5.0, keep=2))
    compactor.write(9, fold_upto(log, 9))
    compactor.compact()
    compactor.gc()  # what both checkpoints cover goes, the view's next number too
    assert [s for s, _ in log._listed(log.log_prefix, 0)] == [10, 11, 12, 13, 14, 15]
    assert view.refresh(max_age=0) == expected
    assert view.seq == 15


def test_a_long_lived_view_writes_checkpoints_as_the_log_grows(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    view = LogView(
        Log(store, "exp/7", cache=None),
        fold,
        initial,
        compaction=Compaction(threshold=5, retention=3600),
    )
    view.refresh()
    for i in range(7):
        log.append([{"k": "a", "v": i}])
    view.refresh(max_age=0)
    assert [s for s, _ in log.checkpoints()] == [7]
    for i in range(3):
        log.append([{"k": "a", "v": 10 + i}])
    view.refresh(max_age=0)
    assert [s for s, _ in log.checkpoints()] == [7]  # 3 < threshold
    for i in range(3):
        log.append([{"k": "a", "v": 20 + i}])
    state: Any = view.refresh(max_age=0)
    assert [s for s, _ in log.checkpoints()] == [7, 13]
    assert state == fold_all(log)
