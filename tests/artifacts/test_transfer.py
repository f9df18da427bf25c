"""The engine's chunked, parallel, verified file transfers, on every backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlflow_bucket.storage import NotFound, ObjectStore
from mlflow_bucket.storage.checksums import crc32c, crc32c_combine
from mlflow_bucket.storage.transfer import TransferFailed, Transfers

# fake_gcs: fake-gcs-server, a second GCS implementation besides our own emulator.
BACKENDS = ["memory", "local", "gcs", "fake_gcs", "s3"]

MiB = 1024 * 1024
# The smallest chunk the cloud backends accept (S3's minimum part size).
CHUNK = 5 * MiB


def _write(path: Path, size: int, seed: int = 0) -> bytes:
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    data = bytes((b + seed) % 256 for b in data[:4096]) + data[4096:]
    path.write_bytes(data)
    return data


def test_crc32c_combine_matches_one_pass() -> None:
    a, b = os.urandom(100_003), os.urandom(77_777)
    assert crc32c_combine(crc32c(a), crc32c(b), len(b)) == crc32c(a + b)
    assert crc32c_combine(crc32c(a), crc32c(b""), 0) == crc32c(a)


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12345])
def test_round_trip_at_chunk_boundaries(store: ObjectStore, tmp_path: Path, size: int) -> None:
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    src = tmp_path / "src.bin"
    data = _write(src, size)
    with Transfers(store, chunk_size=CHUNK, concurrency=4) as t:
        (info,) = t.upload([(str(src), "dir/file.bin")])
        assert info.size == size
        assert store.head("dir/file.bin").size == size
        dst = tmp_path / "dst.bin"
        t.download([("dir/file.bin", str(dst))])
    assert dst.read_bytes() == data
    # Nothing temporary is left beside the file or in the listing.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.bin", "src.bin"]
    assert [o.key for o in store.list_objects("")] == ["dir/file.bin"]


def test_many_files_in_parallel(store: ObjectStore, tmp_path: Path) -> None:
    items = []
    for i in range(60):
        p = tmp_path / f"f{i:03d}"
        p.write_bytes(f"file {i}".encode() * (i + 1))
        items.append((str(p), f"many/f{i:03d}"))
    with Transfers(store, chunk_size=CHUNK) as t:
        t.upload(items)
        out = tmp_path / "out"
        out.mkdir()
        infos = {o.key: o.size for o in store.list_objects("many/")}
        keys = sorted(infos)
        t.download([(k, str(out / k.split("/")[1])) for k in keys], [infos[k] for k in keys])
    for path, key in items:
        assert (out / key.split("/")[1]).read_bytes() == Path(path).read_bytes()


def test_missing_object_is_not_found(store: ObjectStore, tmp_path: Path) -> None:
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    with Transfers(store) as t, pytest.raises(NotFound):
        t.download([("nope", str(tmp_path / "x"))])
    assert not list(tmp_path.iterdir())


def test_batch_failure_names_every_file(store: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"ok")
    store.put("there", b"x")
    with Transfers(store) as t, pytest.raises(TransferFailed) as err:
        t.download([("there", str(tmp_path / "a")), ("gone", str(tmp_path / "b"))])
    assert list(err.value.failures) == ["gone"]
    assert "gone" in str(err.value)
