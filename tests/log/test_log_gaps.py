"""A foreign object past a log's tail, and a damaged checkpoint after gc, cost only themselves.

The rules are docs/format.md's "Gaps" and "Reading": nobody crosses a gap no
checkpoint covers (readers stop before it, writers fill it), gc deletes only
log objects two readable checkpoints cover, and a reader whose newest
checkpoint is unreadable falls back to the one before plus what remains.
Every test runs on memory, a local folder and both emulators.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pytest
from log_helpers import fold, fold_all, fold_upto, initial

from mlflow_bucket.log import Checkpoints, Compaction, CorruptObjectWarning, Log, LogView
from mlflow_bucket.log.codec import encode_batch
from mlflow_bucket.storage import ObjectStore

# Old enough to collect at once (GCS and S3 times are truncated to the second).
NOW = -5.0
KEEP_ALL = Compaction(threshold=0, retention=3600, gc=False)
FOREIGN = [{"k": "foreign", "v": "planted"}]


def _fill(log: Log, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append([{"k": f"k{i % 3}", "v": i}, {"k": f"only{i}", "v": i}])


def _cold(store: ObjectStore) -> tuple[int, dict[str, Any]]:
    """What a new process reads: a fresh Log, no cache."""
    return Checkpoints(Log(store, "exp/7", cache=None), fold, initial, compaction=KEEP_ALL).load()


def _gap_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CorruptObjectWarning)]


# -- a foreign object past the tail -----------------------------------------------------


def test_a_foreign_object_at_the_next_number_is_the_next_batch(store: ObjectStore) -> None:
    """tail + 1 is no gap: the object is read like any (a damaged one as an empty batch)."""
    log = Log(store, "exp/7", cache=None)
    _fill(log, 3)
    store.put(log.key(4), encode_batch(FOREIGN, ["f"]))
    seq, state = _cold(store)
    assert (seq, state["values"]["foreign"]) == (4, "planted")
    assert Log(store, "exp/7", cache=None).append([{"k": "mine", "v": 1}]) == 5
    assert _cold(store) == (5, fold_all(log))


@pytest.mark.parametrize("past", [2, 6, 999_999])
def test_a_foreign_object_further_out_is_ignored_and_writers_append_after_the_true_tail(
    store: ObjectStore, past: int
) -> None:
    log = Log(store, "exp/7", cache=None)
    _fill(log, 3)
    expected = fold_all(log)
    foreign = 3 + past
    url = store.url(log.key(foreign))
    store.put(log.key(foreign), encode_batch(FOREIGN, ["f"]))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cold(store) == (3, expected)
        writer = Log(store, "exp/7", cache=None)
        assert writer.tail() == 3
        # The next write goes right after the true tail, not past the foreign number.
        assert writer.append([{"k": "mine", "v": "first"}]) == 4
    named = _gap_warnings(caught)
    assert named and all(url in text for text in named), named
    assert any("log object 4 does not exist and no checkpoint covers it" in t for t in named)

    seq, state = _cold(store)
    assert state["values"]["mine"] == "first"
    if past == 2:  # that write filled the gap: the foreign object is the next batch now
        assert seq == 5 and state["values"]["foreign"] == "planted"
        return
    assert seq == 4 and "foreign" not in state["values"]
    if past > 6:
        return
    # Writers fill the gap; the one reaching the foreign number goes past it, and
    # from then on the foreign object is part of the log, read like any other.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptObjectWarning)
        numbers = [writer.append([{"k": "mine", "v": i}]) for i in range(foreign - 4)]
    assert numbers == [*range(5, foreign), foreign + 1]
    seq, state = _cold(store)
    assert (seq, state) == (foreign + 1, fold_all(log))
    assert state["values"]["foreign"] == "planted"


def test_a_damaged_foreign_object_far_out_costs_nothing(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    _fill(log, 3)
    expected = fold_all(log)
    store.put(log.key(40), b"not even gzip")
    with pytest.warns(CorruptObjectWarning, match=store.url(log.key(40))):
        assert _cold(store) == (3, expected)


def test_a_view_does_not_cross_the_gap_so_a_write_landing_in_it_is_not_lost(
    store: ObjectStore,
) -> None:
    """A writer that listed before the foreign object appeared creates the first
    missing number afterwards: a reader that had gone past it would never see it."""
    log = Log(store, "exp/7", cache=None)
    _fill(log, 3)
    view = LogView(Log(store, "exp/7", cache=None), fold, initial, compaction=KEEP_ALL)
    view.refresh(max_age=0)
    listed = threading.Event()

    def plant_then_refresh(tail: int) -> None:
        assert tail == 3
        store.put(log.key(9), encode_batch(FOREIGN, ["f"]))
        with pytest.warns(CorruptObjectWarning, match=store.url(log.key(9))):
            view.refresh(max_age=0)
        assert view.seq == 3
        listed.set()

    writer = Log(store, "exp/7", cache=None)
    assert writer.append([{"k": "late", "v": 1}], before_create=plant_then_refresh) == 4
    assert listed.is_set()
    state = view.refresh(max_age=0)
    assert view.seq == 4 and state["values"]["late"] == 1


def test_read_back_stops_before_an_uncovered_gap(store: ObjectStore) -> None:
    """append_and_read_back (names decided by log order) neither fails nor jumps."""
    log = Log(store, "exp/7", cache=None)
    _fill(log, 3)
    store.put(log.key(9), encode_batch(FOREIGN, ["f"]))
    with pytest.warns(CorruptObjectWarning):
        seq, before = Log(store, "exp/7", cache=None).append_and_read_back(
            [{"claim": "x", "by": "me"}], after=1
        )
    assert seq == 4 and [n for n, _ in before] == [2, 3]


def test_gc_keeps_the_true_tail_and_what_lies_past_an_uncovered_gap(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    ckpts = Checkpoints(log, fold, initial, compaction=Compaction(retention=NOW, gc=False))
    _fill(log, 4)
    ckpts.compact()
    _fill(log, 4, start=4)
    ckpts.compact()
    expected = fold_all(log)
    store.put(log.key(20), encode_batch(FOREIGN, ["f"]))
    with pytest.warns(CorruptObjectWarning):
        report = ckpts.gc()
    assert report.log_objects == 4
    assert [seq for seq, _ in log._listed(log.log_prefix, 0)] == [5, 6, 7, 8, 20]
    with pytest.warns(CorruptObjectWarning, match=store.url(log.key(20))):
        assert _cold(store) == (8, expected)
    with pytest.warns(CorruptObjectWarning):
        assert Log(store, "exp/7", cache=None).append([{"k": "next", "v": 1}]) == 9


# -- a damaged newest checkpoint ----------------------------------------------------------


def _two_checkpoints_and_gc(log: Log) -> tuple[dict[str, Any], dict[str, Any]]:
    """Checkpoints at 4 and 8, a tail of 2, gc with nothing young: the states of 1..4
    and of 1..10."""
    ckpts = Checkpoints(log, fold, initial, compaction=Compaction(retention=NOW, gc=False))
    _fill(log, 4)
    ckpts.compact()
    _fill(log, 4, start=4)
    ckpts.compact()
    _fill(log, 2, start=8)
    states = fold_upto(log, 4), fold_upto(log, 10)
    ckpts.gc()
    return states


def test_a_newest_checkpoint_damaged_after_gc_gives_way_to_the_one_before_and_nothing_is_lost(
    store: ObjectStore,
) -> None:
    log = Log(store, "exp/7", cache=None)
    _, expected = _two_checkpoints_and_gc(log)
    # gc kept what only the newest checkpoint covers.
    assert [seq for seq, _ in log._listed(log.log_prefix, 0)] == [5, 6, 7, 8, 9, 10]
    store.put(log.checkpoint_key(8), b"damaged")
    with pytest.warns(CorruptObjectWarning, match=store.url(log.checkpoint_key(8))):
        assert _cold(store) == (10, expected)


def _collected_by_an_older_release(log: Log) -> dict[str, Any]:
    """The store an older release's gc left (log objects up to the newest
    checkpoint deleted), whose newest checkpoint is damaged afterwards: what
    remains readable (checkpoint 4's state and log objects 9 and 10)."""
    at_4, _ = _two_checkpoints_and_gc(log)
    for seq in range(5, 9):
        log.store.delete(log.key(seq))
    log.store.put(log.checkpoint_key(8), b"damaged")
    for record in log.records(8):
        at_4 = fold(at_4, record.seq, record.entries)
    return at_4


def test_a_damaged_checkpoint_over_collected_log_objects_serves_what_remains(
    store: ObjectStore,
) -> None:
    log = Log(store, "exp/7", cache=None)
    remains = _collected_by_an_older_release(log)
    url = store.url(log.checkpoint_key(8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cold(store) == (10, remains)
    named = _gap_warnings(caught)
    assert named and all(url in text for text in named), named
    assert any("log objects 5..8 were folded into this checkpoint" in t for t in named)
    # Writers still append after the true tail, and readers see it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptObjectWarning)
        assert Log(store, "exp/7", cache=None).append([{"k": "after", "v": 1}]) == 11
        seq, state = _cold(store)
    assert seq == 11 and state["values"]["after"] == 1


def test_a_view_whose_newest_checkpoint_is_damaged_over_a_collected_stretch_goes_on(
    store: ObjectStore,
) -> None:
    log = Log(store, "exp/7", cache=None)
    remains = _collected_by_an_older_release(log)
    view = LogView(Log(store, "exp/7", cache=None), fold, initial, compaction=KEEP_ALL)
    with pytest.warns(CorruptObjectWarning):
        assert view.refresh(max_age=0) == remains
    assert view.seq == 10
    _fill(log, 1, start=10)
    view.refresh(max_age=0)
    assert view.seq == 11 and view.state["values"]["only10"] == 10
