"""Side objects written many at once and read ahead: the same objects, fewer round trips."""

from __future__ import annotations

import hashlib
from pathlib import Path

from log_helpers import CountingStore

from mlflow_bucket.log import Log, ObjectCache, codec
from mlflow_bucket.storage import ObjectStore

BACKENDS = ["memory", "local"]


def test_one_serialization_gives_the_same_object_and_name_as_two() -> None:
    for data in (
        {},
        {"m0": [[0.5, False, 1000, 0], [1e308, False, 1001, 1]]},
        {"é✓": [float("inf"), float("-inf")], "z": None},
        ["a", 1, 2.5, True, {"nested": [1, 2]}],
    ):
        ref, payload = codec.encode_side_with_ref(data)
        assert payload == codec.encode_side(data)
        assert ref == hashlib.sha256(codec.canonical_json(data)).hexdigest()
        assert codec.decode_side(payload, "here") == data


def test_write_sides_names_each_by_its_content_and_skips_existing(
    store: ObjectStore, tmp_path: Path
) -> None:
    counting = CountingStore(store)
    log = Log(counting, "exp/7", cache=ObjectCache(tmp_path / "cache"))
    items = [{"run": i, "points": [[i, False, 0, 0]]} for i in range(40)]
    refs = log.write_sides([*items, items[0]])
    assert len(refs) == 41 and refs[-1] == refs[0] and len(set(refs)) == 40
    assert [log.read_side(ref) for ref in refs[:40]] == items
    counting.reset()
    assert log.write_sides(items, existing=set(refs)) == refs[:40]
    assert counting.reset()["put"] == 0


def test_prefetch_fetches_what_the_cache_lacks_once(store: ObjectStore, tmp_path: Path) -> None:
    refs = Log(store, "exp/7", cache=None).write_sides([{"i": i} for i in range(12)])
    counting = CountingStore(store)
    reader = Log(counting, "exp/7", cache=ObjectCache(tmp_path / "reader"))
    reader.read_side(refs[0])
    counting.reset()
    reader.prefetch_sides([*refs, refs[1]])
    assert counting.reset()["get"] == 11  # all but the one already cached, each once
    assert [reader.read_side(ref) for ref in refs] == [{"i": i} for i in range(12)]
    assert counting.reset() == {}
    # Without a cache there is nowhere to keep them: no request at all.
    Log(counting, "exp/7", cache=None).prefetch_sides(refs)
    assert counting.reset() == {}
