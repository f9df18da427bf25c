"""Large downloads: ranges streamed into the file, resumed where a fault
stopped them, and a local failure (a full disk) not retried as if it were
the network's."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from mlflow_bucket.storage import ObjectStore, TransientError, transfer
from mlflow_bucket.storage.transfer import MAX_RANGE, TransferFailed, Transfers, _ranges, _split

BACKENDS = ["gcs", "fake_gcs", "s3"]
MiB = 1024 * 1024
CHUNK = 5 * MiB


def _upload(store: ObjectStore, tmp_path: Path, size: int = 3 * CHUNK + 12345) -> bytes:
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with Transfers(store, chunk_size=CHUNK) as t:
        t.upload([(str(src), "model.bin")])
    return data


class _Cut(Exception):
    """Ends a read partway, as a reset would."""


def test_a_fault_resumes_at_the_first_missing_byte(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _upload(store, tmp_path)
    read = store._read_into  # type: ignore[attr-defined]
    calls: list[tuple[int, int]] = []
    reached: dict[int, int] = {}  # range end -> first byte the failed attempt did not write

    def flaky(key: str, start: int, end: int, version: str | None, sink: Any) -> None:
        calls.append((start, end))
        if end in reached:
            read(key, start, end, version, sink)
            return
        got = 0

        def cut(piece: bytes) -> None:
            nonlocal got
            sink(piece)
            got += len(piece)
            if got >= MiB:
                raise _Cut

        with contextlib.suppress(_Cut):
            read(key, start, end, version, cut)
        reached[end] = start + got
        raise TransientError(f"reset after {got} bytes", operation="get")

    monkeypatch.setattr(store, "_read_into", flaky)
    out = tmp_path / "out.bin"
    with Transfers(store, chunk_size=CHUNK, concurrency=2) as t:
        t.download([("model.bin", str(out))])
    assert out.read_bytes() == data
    # Two ranges (two segments each), each cut once and resumed where it stopped.
    assert len(reached) == 2
    for end, resumed_at in reached.items():
        starts = [start for start, stop in calls if stop == end]
        assert len(starts) == 2 and starts[1] == resumed_at > starts[0]


def test_a_local_write_failure_is_not_retried(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload(store, tmp_path)
    read = store._read_into  # type: ignore[attr-defined]
    calls: list[int] = []

    def counted(key: str, start: int, end: int, version: str | None, sink: Any) -> None:
        calls.append(start)
        read(key, start, end, version, sink)

    def disk_full(self: Any, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_read_into", counted)
    monkeypatch.setattr(transfer._RangeWriter, "__call__", disk_full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with (
        Transfers(store, chunk_size=CHUNK, concurrency=2) as t,
        pytest.raises(TransferFailed) as err,
    ):
        t.download([("model.bin", str(out_dir / "model.bin"))])
    (failure,) = err.value.failures.values()
    assert isinstance(failure, OSError) and failure.errno == errno.ENOSPC
    assert len(calls) <= 2  # one attempt per range, none repeated
    assert not list(out_dir.iterdir())  # no partial or temporary file


def test_ranges_cover_the_file_in_one_round() -> None:
    size = 500 * 1000 * 1000
    segments = _split(size, 8 * MiB)
    ranges = _ranges(segments, 8)
    assert len(ranges) == 8
    flat = [s for group in ranges for s in group]
    assert flat == segments
    assert all(sum(s.size for s in group) <= MAX_RANGE for group in ranges)
    # A huge file: ranges stay at most MAX_RANGE long, many rounds of them.
    huge = _ranges(_split(10 * 1024 * MiB, 8 * MiB), 8)
    assert len(huge) == 10 * 1024 * MiB // MAX_RANGE
