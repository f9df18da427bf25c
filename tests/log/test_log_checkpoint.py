"""Checkpoints, compaction and gc: cold reads stay short and always equal the full fold."""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter
from typing import Any

import pytest
from log_helpers import CountingStore, WrappedStore, fold, fold_all, initial

from mlflow_bucket.log import (
    Checkpoints,
    Compaction,
    CorruptObjectWarning,
    FormatTooNew,
    Log,
    LogGap,
    ObjectCache,
    SideObjects,
)
from mlflow_bucket.log.codec import decode_checkpoint
from mlflow_bucket.storage import ObjectStore, StorageError

# A retention that makes everything old enough to collect at once. Negative
# because GCS and S3 give their time to the second only (truncated), so an
# object written this second may look younger than "now".
NOW = -5.0
KEEP_ALL = Compaction(threshold=10, retention=3600, gc=False)
COLLECT_NOW = Compaction(threshold=10, retention=NOW, keep=2, gc=True)


def _fill(log: Log, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append([{"k": f"k{i % 7}", "v": i}, {"k": f"only{i}", "v": -i}])


def _ckpt_seqs(log: Log) -> list[int]:
    return [seq for seq, _ in log.checkpoints()]


def test_a_cold_read_without_checkpoints_folds_the_whole_log(log: Log) -> None:
    _fill(log, 5)
    seq, state = Checkpoints(log, fold, initial, compaction=KEEP_ALL).load()
    assert seq == 5 and state == fold_all(log)
    assert _ckpt_seqs(log) == []  # below the threshold: nothing written


def test_checkpoint_plus_tail_equals_folding_everything(log: Log) -> None:
    _fill(log, 23)
    everything = fold_all(log)
    seq, state = Checkpoints(log, fold, initial, compaction=KEEP_ALL).load()
    assert (seq, state) == (23, everything)
    # The reader found a tail past the threshold and checkpointed it.
    assert _ckpt_seqs(log) == [23]
    _fill(log, 4, start=23)
    seq, state = Checkpoints(log, fold, initial, compaction=KEEP_ALL).load()
    assert (seq, state) == (27, fold_all(log))
    assert _ckpt_seqs(log) == [23]  # a 4-object tail is short


def test_a_checkpoint_is_a_documented_immutable_object(log: Log) -> None:
    _fill(log, 3)
    ckpts = Checkpoints(log, fold, initial, compaction=KEEP_ALL)
    seq, state = ckpts.load()
    assert ckpts.write(seq, state) == (True, frozenset())
    # Racing compactors write the same content; the second is told it exists.
    assert ckpts.write(seq, state) == (False, frozenset())
    data = log.store.get("exp/7/ckpt/000000000003")
    assert decode_checkpoint(data, "x") == (3, fold_all(log), [])
    doc = json.loads(gzip.decompress(data))
    assert doc["format"] == "mlflow-bucket/checkpoint" and doc["version"] == 1


def test_compaction_racing_compaction_and_appends(store: ObjectStore) -> None:
    writer = Log(store, "exp/7", cache=None)
    _fill(writer, 12)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def compactor() -> None:
        try:
            ckpts = Checkpoints(Log(store, "exp/7", cache=None), fold, initial, compaction=KEEP_ALL)
            start.wait()
            for _ in range(2):
                ckpts.compact()
        except BaseException as exc:
            errors.append(exc)

    def appender() -> None:
        start.wait()
        _fill(Log(store, "exp/7", cache=None), 6, start=100)

    threads = [threading.Thread(target=compactor) for _ in range(4)]
    threads += [threading.Thread(target=appender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = Log(store, "exp/7", cache=None)
    # Every checkpoint, whoever wrote it, is exactly the fold up to its number.
    for seq, info in log.checkpoints():
        state = initial()
        for s, entries in log.read(0):
            if s <= seq:
                state = fold(state, s, entries)
        assert decode_checkpoint(store.get(info.key), info.key)[1] == state
    assert Checkpoints(log, fold, initial, compaction=KEEP_ALL).load() == (24, fold_all(log))


def test_gc_deletes_log_objects_two_checkpoints_cover_and_old_checkpoints(
    log: Log,
) -> None:
    ckpts = Checkpoints(log, fold, initial, compaction=Compaction(retention=NOW, keep=2, gc=False))
    for round_ in range(3):
        _fill(log, 5, start=5 * round_)
        ckpts.compact()
    assert _ckpt_seqs(log) == [5, 10, 15]
    report = ckpts.gc()
    assert (report.checkpoint, report.checkpoints) == (15, 1)
    assert _ckpt_seqs(log) == [10, 15]
    # What the two newest checkpoints both cover is gone; what only the newest
    # covers stays, for a reader to fall back on should it be damaged.
    assert [seq for seq, _ in log._listed(log.log_prefix, 0)] == [11, 12, 13, 14, 15]
    assert report.log_objects == 10
    _fill(log, 2, start=15)
    assert [seq for seq, _ in log.read(15)] == [16, 17]
    # A reader folds from the checkpoint: the same state as the full fold had.
    seq, state = Checkpoints(log, fold, initial, compaction=KEEP_ALL).load()
    reference = Log(log.store, "other", cache=None)
    _fill(reference, 17)
    assert (seq, state) == (17, fold_all(reference))


def test_gc_spares_what_is_younger_than_the_retention_window(log: Log) -> None:
    ckpts = Checkpoints(log, fold, initial, compaction=Compaction(retention=3600, keep=2))
    for round_ in range(3):
        _fill(log, 5, start=5 * round_)
        ckpts.compact()
    report = ckpts.gc()
    assert (report.log_objects, report.checkpoints) == (0, 1)
    assert len(list(log._listed(log.log_prefix, 0))) == 15
    assert _ckpt_seqs(log) == [10, 15]


def test_gc_keeps_two_readable_checkpoints_and_deletes_log_objects_only_below_both(
    log: Log,
) -> None:
    """keep=1 counts as 2; one checkpoint alone frees no log object."""
    ckpts = Checkpoints(log, fold, initial, compaction=Compaction(retention=NOW, keep=1))
    _fill(log, 5)
    ckpts.compact()
    assert ckpts.gc().log_objects == 0
    assert len(list(log._listed(log.log_prefix, 0))) == 5
    _fill(log, 5, start=5)
    ckpts.compact()
    report = ckpts.gc()
    assert (report.log_objects, report.checkpoints) == (5, 0)
    assert _ckpt_seqs(log) == [5, 10]
    assert [seq for seq, _ in log._listed(log.log_prefix, 0)] == [6, 7, 8, 9, 10]


class _GcOnFirstGet(WrappedStore):
    """Runs ``action`` (someone else's compaction and gc) before the first GET under ``prefix``."""

    def __init__(self, inner: ObjectStore, prefix: str, action: Any) -> None:
        super().__init__(inner)
        self.prefix, self.action = prefix, action
        self.fired = threading.Event()
        self._lock = threading.Lock()

    def before(self, op: str, key: str) -> None:
        if op == "get" and key.startswith(self.prefix):
            with self._lock:
                if self.fired.is_set():
                    return
                self.action()
                self.fired.set()


def test_gc_between_a_readers_log_listing_and_its_gets_makes_it_reread_from_the_checkpoint(
    store: ObjectStore,
) -> None:
    log = Log(store, "exp/7", cache=None)
    _fill(log, 12)
    other = Checkpoints(log, fold, initial, compaction=COLLECT_NOW)

    def compact_and_collect() -> None:
        other.compact()
        other.gc()

    racing = _GcOnFirstGet(store, "exp/7/log/", compact_and_collect)
    reader = Checkpoints(
        Log(racing, "exp/7", cache=None), fold, initial, compaction=Compaction(threshold=0)
    )
    expected = fold_all(log)
    seq, state = reader.load()
    assert racing.fired.is_set()
    assert (seq, state) == (12, expected)
    assert _ckpt_seqs(log) == [12]


def test_gc_between_a_readers_checkpoint_listing_and_its_get(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    other = Checkpoints(log, fold, initial, compaction=Compaction(retention=NOW, keep=2, gc=False))
    _fill(log, 6)
    other.compact()
    expected: dict[str, Any] = {}

    def newer_checkpoints_and_gc() -> None:
        for start in (6, 9):
            _fill(log, 3, start=start)
            other.compact()
        expected.update(fold_all(log))
        other.gc()  # two newer checkpoints: checkpoint 6, which the reader listed, is deleted

    racing = _GcOnFirstGet(store, "exp/7/ckpt/", newer_checkpoints_and_gc)
    reader = Checkpoints(
        Log(racing, "exp/7", cache=None), fold, initial, compaction=Compaction(threshold=0)
    )
    seq, state = reader.load()
    assert racing.fired.is_set()
    assert _ckpt_seqs(log) == [9, 12]
    assert (seq, state) == (12, expected)


def test_a_log_object_deleted_by_hand_hides_what_follows_until_writers_fill_it(
    log: Log,
) -> None:
    """No checkpoint covers the hole, so it is not gc's: nobody goes past it
    (docs/format.md, "Gaps"), and the next append fills it."""
    _fill(log, 4)
    log.store.delete(log.key(2))
    reader = Checkpoints(log, fold, initial, compaction=KEEP_ALL)
    with pytest.warns(CorruptObjectWarning, match=r"log/000000000003: log object 2 does not"):
        seq, state = reader.load()
    assert (seq, state["upto"]) == (1, 1)
    assert Log(log.store, "exp/7", cache=None).append([{"k": "late", "v": 0}]) == 2
    seq, state = Checkpoints(log, fold, initial, compaction=KEEP_ALL).load()
    assert (seq, state) == (4, fold_all(log))
    assert state["values"]["late"] == 0


def test_a_cold_read_that_never_settles_is_a_storage_error() -> None:
    """LogGap reaches MLflow and the command line like any failure of the bucket."""
    assert issubclass(LogGap, StorageError)


def test_a_damaged_checkpoint_is_skipped_for_the_one_before(log: Log) -> None:
    ckpts = Checkpoints(log, fold, initial, compaction=Compaction(retention=3600, gc=False))
    _fill(log, 4)
    ckpts.compact()
    _fill(log, 4, start=4)
    log.store.put(log.checkpoint_key(8), b"garbage")
    with pytest.warns(CorruptObjectWarning, match="ckpt/000000000008"):
        assert ckpts.load(compact=False) == (8, fold_all(log))
    # gc trusts only readable checkpoints: nothing covered by the damaged one goes.
    ckpts.compaction = Compaction(retention=NOW, keep=1)
    report = ckpts.gc()
    assert report.checkpoint == 4


def test_a_checkpoint_from_a_newer_format_is_a_clear_error(log: Log) -> None:
    _fill(log, 2)
    newer = {"format": "mlflow-bucket/checkpoint", "version": 7, "seq": 2, "state": {}}
    log.store.put(log.checkpoint_key(2), gzip.compress(json.dumps(newer).encode()))
    with pytest.raises(FormatTooNew, match=r"ckpt/000000000002.*version 7"):
        Checkpoints(log, fold, initial).load()


# -- side objects -------------------------------------------------------------------


def _dump(state: dict[str, Any], side: SideObjects) -> dict[str, Any]:
    # Cold data: the values, in one side object per first letter of the key.
    groups: dict[str, dict[str, Any]] = {}
    for k, v in state["values"].items():
        groups.setdefault(k[0], {})[k] = v
    refs = {g: side.put(values) for g, values in sorted(groups.items())}
    return {"claims": state["claims"], "upto": state["upto"], "refs": refs}


def test_side_objects_hold_cold_data_beside_the_checkpoint(store: ObjectStore) -> None:
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=None)

    def load(doc: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for ref in doc["refs"].values():
            values.update(log.read_side(ref))
        return {"values": values, "claims": doc["claims"], "upto": doc["upto"]}

    ckpts = Checkpoints(
        log, fold, initial, dump=_dump, load=load, compaction=Compaction(retention=NOW, keep=2)
    )
    log.append([{"k": "apple", "v": 1}, {"k": "berry", "v": 2}])
    ckpts.compact()
    _, info = log.checkpoints()[0]
    _, doc, refs = decode_checkpoint(store.get(info.key), info.key)
    assert sorted(refs) == sorted(doc["refs"].values()) and len(refs) == 2
    assert all(store.exists(f"exp/7/side/{r}") for r in refs)

    # Only the changed group is written again; the unchanged one is referenced.
    log.append([{"k": "apricot", "v": 3}])
    counting.reset()
    assert ckpts.compact() == 2
    assert counting.counts["put"] == 1
    assert Checkpoints(log, fold, initial, load=load).load(compact=False) == (2, fold_all(log))

    # gc: once a third checkpoint retires the first, the old "a" group is
    # referenced by no remaining checkpoint.
    assert ckpts.gc().side_objects == 0
    log.append([{"k": "cherry", "v": 4}])
    assert ckpts.compact() == 3
    report = ckpts.gc()
    assert report.side_objects == 1
    refs_kept: set[str] = set()
    for n in (2, 3):
        refs_kept.update(decode_checkpoint(store.get(log.checkpoint_key(n)), "x")[2])
    assert sorted(o.key for o in store.list_objects("exp/7/side/")) == sorted(
        f"exp/7/side/{r}" for r in refs_kept
    )


def test_keeping_a_side_object_renews_it_only_if_its_checkpoint_is_gone(
    store: ObjectStore,
) -> None:
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=None)
    ref = log.write_side({"history": [1, 2, 3]})
    counting.reset()
    assert SideObjects(log, frozenset({ref})).keep(ref) == ref
    assert counting.reset() == Counter()  # its checkpoint still protects it
    assert SideObjects(log, frozenset()).keep(ref) == ref
    assert counting.reset() == Counter({"get": 1, "put": 1})  # read and written again
    assert log.read_side(ref) == {"history": [1, 2, 3]}


# -- request counts -------------------------------------------------------------


def test_request_counts_of_a_cold_read_and_an_append(
    store: ObjectStore, cache: ObjectCache
) -> None:
    """Requests as the store sees them (one per HTTP request on GCS and S3)."""
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=None)
    _fill(log, 40)
    Checkpoints(log, fold, initial, compaction=KEEP_ALL).compact()
    _fill(log, 5, start=40)
    expected = (45, fold_all(log))

    counting.reset()
    reader = Checkpoints(Log(counting, "exp/7", cache=cache), fold, initial, compaction=KEEP_ALL)
    assert reader.load() == expected
    cold = counting.reset()
    # LIST ckpt/, GET the checkpoint, LIST log/ after it, GET the 5 objects.
    assert cold == Counter({"list": 2, "get": 6})

    assert reader.load() == expected
    warm = counting.reset()
    assert warm == Counter({"list": 2})  # immutable objects come from the local cache

    appender = Log(counting, "exp/7", cache=None)
    appender.append([{"k": "x", "v": 1}])
    fresh_append = counting.reset()
    assert fresh_append == Counter({"list": 2, "create": 1})
    appender.append([{"k": "x", "v": 2}])
    known_append = counting.reset()
    assert known_append == Counter({"list": 1, "create": 1})
