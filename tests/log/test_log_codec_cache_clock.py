"""The object encoding, the local cache of immutable objects, and the server clock."""

from __future__ import annotations

import gzip
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from log_helpers import FlakyStore, WrappedStore

from mlflow_bucket.log import ClockOffset, CorruptObject, FormatTooNew, ObjectCache, codec
from mlflow_bucket.storage import ObjectStore, open_store

# -- codec -----------------------------------------------------------------------


def test_objects_are_gzip_json_with_a_format_header() -> None:
    data = codec.encode_batch([{"k": "a", "v": float("nan")}, {"z": 1, "a": [1, 2]}], ["b1"])
    doc = json.loads(gzip.decompress(data))
    assert doc["format"] == "mlflow-bucket/log" and doc["version"] == codec.FORMAT_VERSION
    entries, batches = codec.decode_batch(data, "gs://b/x")
    assert batches == ["b1"] and entries[1] == {"a": [1, 2], "z": 1}
    assert entries[0]["v"] != entries[0]["v"]  # NaN survives
    # Deterministic: equal content, equal bytes (racing compactors agree).
    assert codec.encode_checkpoint(3, {"b": 1, "a": 2}, []) == codec.encode_checkpoint(
        3, {"a": 2, "b": 1}, []
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"plain", "bad compression"),
        (gzip.compress(b"\xff\xfe"), "bad JSON"),
        (gzip.compress(b"[1]"), "not a JSON object"),
        (gzip.compress(b'{"format": "x", "version": 1}'), "format 'x'"),
        (gzip.compress(b'{"format": "mlflow-bucket/log", "version": "1"}'), "unknown format"),
        (gzip.compress(b'{"format": "mlflow-bucket/log", "version": 1}'), "'entries'"),
    ],
)
def test_damaged_objects_are_named_in_the_error(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptObject, match=reason) as err:
        codec.decode_batch(data, "gs://bucket/exp/7/log/000000000009")
    assert "gs://bucket/exp/7/log/000000000009" in str(err.value)


def test_a_newer_version_names_the_key_and_both_versions() -> None:
    data = gzip.compress(b'{"format": "mlflow-bucket/side", "version": 2, "data": 1}')
    with pytest.raises(FormatTooNew) as err:
        codec.decode_side(data, "s3://b/exp/side/abc")
    assert str(err.value).startswith("s3://b/exp/side/abc: written in on-bucket format version 2")
    assert (err.value.found, err.value.known) == (2, 1)


# -- cache -----------------------------------------------------------------------


def test_cache_round_trip_keyed_by_key_and_version(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path)
    assert cache.get("a/1", "v1") is None
    cache.put("a/1", "v1", b"one")
    assert cache.get("a/1", "v1") == b"one"
    # A new object at the same key (a wiped and refilled bucket) is a miss.
    assert cache.get("a/1", "v2") is None
    assert not any((tmp_path / ".tmp").iterdir())  # temp files were renamed into place


def test_cache_folders_are_per_store(tmp_path: Path) -> None:
    a = ObjectCache.for_store(open_store("memory://one/x"), tmp_path)
    b = ObjectCache.for_store(open_store("memory://two/x"), tmp_path)
    assert a.directory != b.directory and a.directory.parent == tmp_path
    a.put("k", "1", b"a")
    assert b.get("k", "1") is None


def test_cache_evicts_least_recently_used_beyond_its_bound(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path, max_bytes=1000)
    for i in range(4):
        cache.put(f"k{i}", "v", bytes(200))
        path = cache._path(f"k{i}", "v")
        os.utime(path, (1000 + i, 1000 + i))
    # Reading k0 makes it recent again.
    assert cache.get("k0", "v") is not None
    for i in range(4, 6):
        cache.put(f"k{i}", "v", bytes(200))
    # 1200 bytes: back under 80% of the bound, least recently used first.
    present = [i for i in range(6) if cache._path(f"k{i}", "v").exists()]
    assert present == [0, 3, 4, 5]


# -- clock -----------------------------------------------------------------------


class _SkewedStore(WrappedStore):
    def _server_time(self) -> datetime:
        # A server ten minutes ahead, answering to the second like a Date header.
        return (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)


def test_clock_offset_corrects_to_the_servers_clock(store: ObjectStore) -> None:
    clock = ClockOffset(_SkewedStore(store))
    assert abs(clock.offset() - 600) < 1.5
    assert abs(clock.now() - (datetime.now(UTC) + timedelta(minutes=10))) < timedelta(seconds=2)
    assert abs(clock.now_ms() - (time.time() + 600) * 1000) < 2000
    assert abs(ClockOffset(store).measure()) < 60  # the emulators run on this machine


def test_an_unreachable_store_costs_the_clock_one_short_wait(store: ObjectStore) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    clock = ClockOffset(flaky, timeout=0.2)
    started = time.monotonic()
    assert clock.offset() == 0.0
    for _ in range(100):
        assert clock.offset() == 0.0
    assert time.monotonic() - started < 1.0
