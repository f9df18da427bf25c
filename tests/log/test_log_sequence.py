"""The log: gapless total order under contention, reading, corrupt objects."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import threading
import time
from collections import Counter
from typing import Any

import pytest
from log_helpers import CountingStore, fold_all

from mlflow_bucket.log import (
    CorruptObjectWarning,
    FormatTooNew,
    Log,
    LogTruncated,
    ObjectCache,
)
from mlflow_bucket.log.codec import encode_batch
from mlflow_bucket.storage import ObjectStore, open_store


def test_an_empty_log(log: Log) -> None:
    assert log.tail() == 0
    assert list(log.read(0)) == []


def test_append_numbers_batches_and_read_returns_what_follows(log: Log) -> None:
    assert log.append([{"k": "a", "v": 1}, {"k": "b", "v": 2}]) == 1
    assert log.append([{"k": "a", "v": 3}]) == 2
    assert log.append([{"k": "c", "v": 4}]) == 3
    assert list(log.read(0)) == [
        (1, [{"k": "a", "v": 1}, {"k": "b", "v": 2}]),
        (2, [{"k": "a", "v": 3}]),
        (3, [{"k": "c", "v": 4}]),
    ]
    assert [seq for seq, _ in log.read(1)] == [2, 3]
    assert list(log.read(3)) == []
    assert log.tail() == 3
    # One append is one object, named by a 12-digit number.
    keys = [o.key for o in log.store.list_objects("exp/7/")]
    assert keys == [f"exp/7/log/{n:012d}" for n in (1, 2, 3)]


def test_records_carry_batch_ids(log: Log) -> None:
    log.append([{"k": "a", "v": 1}], batches=["b1", "b2"])
    (record,) = log.records(0)
    assert record.batches == ("b1", "b2")
    assert log.find_batches(["b2", "nope"], 0) == ({"b2": 1}, True)


def test_entries_that_are_not_json_are_refused_before_anything_is_written(log: Log) -> None:
    with pytest.raises(ValueError, match="JSON"):
        log.append([{"k": object()}])
    assert log.tail() == 0


def test_another_writer_appends_are_seen_and_never_overwritten(store: ObjectStore) -> None:
    a = Log(store, "exp/7", cache=None)
    b = Log(store, "exp/7", cache=None)
    assert a.append([{"w": "a"}]) == 1
    assert b.append([{"w": "b"}]) == 2
    # `a` still believes the tail is 1: its listing finds 2, it claims 3.
    assert a.append([{"w": "a2"}]) == 3
    assert [e[0]["w"] for _, e in a.read(0)] == ["a", "b", "a2"]


def test_an_appender_behind_a_collected_stretch_still_claims_the_true_tail(
    store: ObjectStore,
) -> None:
    """gc deletes old objects but never the newest: the listing still finds the tail."""
    log = Log(store, "exp/7", cache=None)
    for i in range(10):
        log.append([{"i": i}])
    stale = Log(store, "exp/7", cache=None)
    stale._note(1)
    store.put(log.checkpoint_key(9), b"(not read)")  # gc deletes only what one covers
    for seq in range(2, 10):
        store.delete(log.key(seq))
    assert stale.append([{"i": "late"}]) == 11


def test_a_slow_appender_lists_again_before_creating(store: ObjectStore) -> None:
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=None, relist_after=0.05)
    log.append([{"i": 0}])
    counting.reset()
    seq = log.append([{"i": 1}], before_create=lambda tail: time.sleep(0.1))
    assert seq == 2
    assert counting.counts["list"] == 2 and counting.counts["create"] == 1


def _append_many(log: Log, who: str, n: int, start: threading.Barrier) -> list[int]:
    start.wait()
    return [log.append([{"w": who, "i": i}]) for i in range(n)]


def _assert_gapless_and_exactly_once(log: Log, writers: list[str], per_writer: int) -> None:
    records = list(log.read(0))
    assert [seq for seq, _ in records] == list(range(1, len(writers) * per_writer + 1))
    seen = Counter((e["w"], e["i"]) for _, entries in records for e in entries)
    assert seen == Counter({(w, i): 1 for w in writers for i in range(per_writer)})


def test_concurrent_appends_from_threads_are_gapless_without_loss_or_duplicate(
    store: ObjectStore,
) -> None:
    writers, per_writer = [f"t{i}" for i in range(8)], 5
    start = threading.Barrier(len(writers))
    results: dict[str, list[int]] = {}

    def run(who: str) -> None:
        # Each thread has its own Log, as separate processes would.
        results[who] = _append_many(Log(store, "exp/7", cache=None), who, per_writer, start)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = Log(store, "exp/7", cache=None)
    _assert_gapless_and_exactly_once(log, writers, per_writer)
    # Each writer got back the number its batch really has.
    by_seq = {seq: entries[0] for seq, entries in log.read(0)}
    for who, seqs in results.items():
        assert [by_seq[s]["w"] for s in seqs] == [who] * per_writer
        assert [by_seq[s]["i"] for s in seqs] == list(range(per_writer))


def _append_in_process(
    uri: str, options: dict[str, Any], who: str, n: int, start: Any
) -> list[int]:
    store = open_store(uri, **options)
    try:
        return _append_many(Log(store, "exp/7", cache=None), who, n, start)
    finally:
        store.close()


def _in_processes(
    store_target: tuple[str, dict[str, Any], Any], fn: Any, args: list[Any]
) -> list[Any]:
    uri, options, _ = store_target
    if uri.startswith("memory://"):
        pytest.skip("a memory store lives in one process")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(len(args))
        with ctx.Pool(len(args)) as pool:
            return pool.starmap(fn, [(uri, options, *a, start) for a in args])


def test_concurrent_appends_from_processes_are_gapless_without_loss_or_duplicate(
    store_target: tuple[str, dict[str, Any], Any], store: ObjectStore
) -> None:
    writers, per_writer = [f"p{i}" for i in range(4)], 5
    _in_processes(store_target, _append_in_process, [(w, per_writer) for w in writers])
    _assert_gapless_and_exactly_once(Log(store, "exp/7", cache=None), writers, per_writer)


# -- uniqueness decided by the log ----------------------------------------------


def _claim(log: Log, who: str) -> bool:
    """Claim the name "x"; True if this claim is the first in log order."""
    _, before = log.append_and_read_back([{"claim": "x", "by": who}])
    return not any(e.get("claim") == "x" for _, entries in before for e in entries)


def test_exactly_one_of_eight_threads_claiming_a_name_sees_itself_first(
    store: ObjectStore,
) -> None:
    start = threading.Barrier(8)
    outcome: dict[str, bool] = {}

    def run(who: str) -> None:
        log = Log(store, "exp/7", cache=None)
        start.wait()
        outcome[who] = _claim(log, who)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [who for who, first in outcome.items() if first]
    assert len(winners) == 1
    # Every reader computes the same winner from the log.
    assert fold_all(Log(store, "exp/7", cache=None))["claims"] == {"x": winners[0]}


def _claim_in_process(uri: str, options: dict[str, Any], who: str, start: Any) -> tuple[str, bool]:
    store = open_store(uri, **options)
    try:
        log = Log(store, "exp/7", cache=None)
        start.wait()
        return who, _claim(log, who)
    finally:
        store.close()


def test_exactly_one_of_four_processes_claiming_a_name_sees_itself_first(
    store_target: tuple[str, dict[str, Any], Any], store: ObjectStore
) -> None:
    outcome = dict(_in_processes(store_target, _claim_in_process, [(f"p{i}",) for i in range(4)]))
    winners = [who for who, first in outcome.items() if first]
    assert len(winners) == 1
    assert fold_all(Log(store, "exp/7", cache=None))["claims"] == {"x": winners[0]}


def test_read_back_after_a_known_position_returns_only_what_lies_between(log: Log) -> None:
    for i in range(5):
        log.append([{"i": i}])
    seq, before = log.append_and_read_back([{"i": 5}], after=3)
    assert seq == 6
    assert before == [(4, [{"i": 3}]), (5, [{"i": 4}])]


def test_read_back_over_a_collected_stretch_raises_truncated(log: Log) -> None:
    for i in range(4):
        log.append([{"i": i}])
    log.store.put(log.checkpoint_key(2), b"(not read)")  # gc deletes only what one covers
    log.store.delete(log.key(2))
    with pytest.raises(LogTruncated) as err:
        log.append_and_read_back([{"i": 4}], after=0)
    assert err.value.appended == 5 and err.value.missing == 2


# -- reading ---------------------------------------------------------------------


def test_a_reader_meeting_a_collected_object_is_told_to_use_a_checkpoint(log: Log) -> None:
    for i in range(4):
        log.append([{"i": i}])
    log.store.put(log.checkpoint_key(2), b"(not read)")  # gc deletes only what one covers
    log.store.delete(log.key(2))
    read: list[int] = []
    with pytest.raises(LogTruncated) as err:
        read.extend(seq for seq, _ in log.read(0))
    assert err.value.missing == 2 and err.value.found == 3
    assert read == [1]  # what precedes the gap comes first
    assert [seq for seq, _ in log.read(2)] == [3, 4]


def test_reading_goes_page_by_page_in_order(store: ObjectStore) -> None:
    log = Log(store, "exp/7", cache=None)
    log.page_size = 7
    payload = encode_batch([{"i": 0}], ["b"])
    store.put_many({log.key(n): payload for n in range(1, 31)})
    assert [seq for seq, _ in log.read(0)] == list(range(1, 31))
    assert [seq for seq, _ in log.read(12)] == list(range(13, 31))
    assert [r.seq for r in log.records(3, upto=9)] == list(range(4, 10))


def test_the_local_cache_serves_repeated_reads(store: ObjectStore, cache: ObjectCache) -> None:
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=cache)
    for i in range(3):
        log.append([{"i": i}])
    counting.reset()
    fresh = Log(counting, "exp/7", cache=cache)
    assert [seq for seq, _ in fresh.read(0)] == [1, 2, 3]
    # The appender cached what it wrote: only the listing goes out.
    assert counting.reset() == Counter({"list": 1})


def test_a_fresh_log_finds_its_tail_from_the_newest_checkpoint(store: ObjectStore) -> None:
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=None)
    for i in range(5):
        log.append([{"i": i}])
    store.put(log.checkpoint_key(4), b"(contents not read)")
    counting.reset()
    fresh = Log(counting, "exp/7", cache=None)
    assert fresh.append([{"i": 5}]) == 6
    # LIST ckpt/, LIST log/ after 4, create 6: the listing does not start at 0.
    assert counting.reset() == Counter({"list": 2, "create": 1})


# -- damaged and foreign objects -------------------------------------------------------------


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def test_corrupt_and_foreign_objects_are_skipped_with_a_warning_naming_them(
    log: Log, store: ObjectStore
) -> None:
    log.append([{"i": 1}])
    store.put(log.key(2), b"definitely not gzip")
    store.put(log.key(3), _gz(b'{"format": "mlflow-bucket/log", "version": 1, "entr'))
    store.put(log.key(4), _gz(json.dumps({"format": "something/else", "version": 1}).encode()))
    store.put(log.key(5), _gz(json.dumps({"format": "mlflow-bucket/log", "version": 0}).encode()))
    store.put("exp/7/log/README", b"a stray file")
    store.put("exp/7/log/0042", b"a short name")
    log2 = Log(store, "exp/7", cache=None)
    log2._note(5)
    with pytest.warns(CorruptObjectWarning):
        assert log2.append([{"i": 6}]) == 6

    with pytest.warns(CorruptObjectWarning) as caught:
        records = list(log.records(0))
    assert [(r.seq, r.entries, r.corrupt) for r in records] == [
        (1, [{"i": 1}], False),
        (2, [], True),
        (3, [], True),
        (4, [], True),
        (5, [], True),
        (6, [{"i": 6}], False),
    ]
    messages = [str(w.message) for w in caught]
    for name in ["log/000000000002", "log/000000000003", "log/000000000004", "log/000000000005"]:
        assert any(store.url(f"exp/7/{name}") in m for m in messages), name
    assert any(store.url("exp/7/log/README") in m for m in messages)
    assert any(store.url("exp/7/log/0042") in m for m in messages)
    assert any("bad compression" in m for m in messages)
    assert any("bad JSON" in m for m in messages)
    assert any("'something/else'" in m for m in messages)
    assert any("unknown format version 0" in m for m in messages)


def test_an_object_from_a_newer_format_stops_the_reader_with_a_clear_error(
    log: Log, store: ObjectStore
) -> None:
    log.append([{"i": 1}])
    newer = _gz(json.dumps({"format": "mlflow-bucket/log", "version": 99, "entries": []}).encode())
    store.put(log.key(2), newer)
    with pytest.raises(FormatTooNew) as err:
        list(log.read(0))
    message = str(err.value)
    assert store.url(log.key(2)) in message
    assert "version 99" in message and "up to 1" in message
