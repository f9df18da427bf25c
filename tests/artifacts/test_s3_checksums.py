"""S3 multipart uploads: CRC32 per part (unsigned payload), the object's
COMPOSITE CRC32 checked end to end, and the Content-MD5/ETag fallback for
stores that take no additional checksums."""

from __future__ import annotations

import base64
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from fsspec.asyn import sync

from mlflow_bucket.storage import ObjectStore, transfer
from mlflow_bucket.storage.checksums import crc32_b64, crc32_composite
from mlflow_bucket.storage.s3 import S3Store
from mlflow_bucket.storage.transfer import ChecksumMismatch, Transfers

BACKENDS = ["s3"]
MiB = 1024 * 1024
CHUNK = 5 * MiB


def _file(tmp_path: Path, size: int = 2 * CHUNK + 12345) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(size))
    return path


def _record_calls(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    call = store._call

    def spy(operation: str, key: str, method: str, **params: Any) -> dict[str, Any]:
        calls.append((method, params))
        return call(operation, key, method, **params)

    monkeypatch.setattr(store, "_call", spy)
    return calls


def _corrupt_part(store: S3Store, monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Flip a byte of one part on its way out (its declared checksum kept):
    the emulator checks neither Content-MD5 nor CRC32 headers, so only the
    end-to-end check can notice."""
    call = store._call

    def flip(operation: str, key: str, method: str, **params: Any) -> dict[str, Any]:
        if method == "upload_part" and params["PartNumber"] == number:
            body = params["Body"]
            params = {**params, "Body": bytes([body[0] ^ 1]) + body[1:]}
        return call(operation, key, method, **params)

    monkeypatch.setattr(store, "_call", flip)


def _without_checksums(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that ignores ChecksumAlgorithm (some S3-compatible ones)."""
    call = store._call

    def plain(operation: str, key: str, method: str, **params: Any) -> dict[str, Any]:
        params.pop("ChecksumAlgorithm", None)
        return call(operation, key, method, **params)

    monkeypatch.setattr(store, "_call", plain)


def test_composite_crc32_is_crc32_of_part_crc32s() -> None:
    parts = [os.urandom(1000), os.urandom(77)]
    crcs = [zlib.crc32(p) for p in parts]
    joined = b"".join(c.to_bytes(4, "big") for c in crcs)
    expected = base64.b64encode(zlib.crc32(joined).to_bytes(4, "big")).decode()
    assert crc32_composite([crc32_b64(c) for c in crcs]) == f"{expected}-2"


def test_parts_carry_crc32_and_no_payload_hash(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, S3Store)
    src = _file(tmp_path)
    calls = _record_calls(store, monkeypatch)
    headers: list[dict[str, str]] = []

    async def watch() -> None:
        client = await store._client()
        client.meta.events.register(
            "before-send.s3.UploadPart",
            lambda request, **_: headers.append(
                {
                    k.lower(): v.decode() if isinstance(v, bytes) else v
                    for k, v in request.headers.items()
                }
            ),
        )

    sync(store.fs.loop, watch)
    with Transfers(store, chunk_size=CHUNK, concurrency=3) as t:
        (info,) = t.upload([(str(src), "model.bin")])
        t.download([("model.bin", str(tmp_path / "back.bin"))])
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert info.size == src.stat().st_size

    data = src.read_bytes()
    part_crcs = [crc32_b64(zlib.crc32(data[i : i + CHUNK])) for i in range(0, len(data), CHUNK)]
    sent = sorted((p["PartNumber"], p) for m, p in calls if m == "upload_part")
    assert [p["ChecksumCRC32"] for _, p in sent] == part_crcs
    assert all("ContentMD5" not in p for _, p in sent)
    # S3 checks the CRC32 header: no SHA-256 of the part for the signature.
    assert len(headers) == 3
    for h in headers:
        assert h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "x-amz-checksum-crc32" in h
        assert "content-md5" not in h
    (listing,) = [
        p["MultipartUpload"]["Parts"] for m, p in calls if m == "complete_multipart_upload"
    ]
    assert [part["ChecksumCRC32"] for part in listing] == part_crcs
    head = store._call(
        "head", "model.bin", "head_object", Key=store._full("model.bin"), ChecksumMode="ENABLED"
    )
    assert crc32_composite(part_crcs).startswith(str(head["ChecksumCRC32"]))


def test_corrupt_part_fails_naming_the_file(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, S3Store)
    src = _file(tmp_path)
    _corrupt_part(store, monkeypatch, 2)
    with Transfers(store, chunk_size=CHUNK) as t, pytest.raises(ChecksumMismatch) as err:
        t.upload([(str(src), "model.bin")])
    assert str(src) in str(err.value)
    assert "CRC32" in str(err.value)


def test_store_without_checksums_falls_back_to_md5(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, S3Store)
    src = _file(tmp_path)
    _without_checksums(store, monkeypatch)
    calls = _record_calls(store, monkeypatch)
    with Transfers(store, chunk_size=CHUNK) as t:
        t.upload([(str(src), "model.bin")])
    parts = [p for m, p in calls if m == "upload_part"]
    assert len(parts) == 3
    assert all("ContentMD5" in p and "ChecksumCRC32" not in p for p in parts)

    # And the multipart ETag still catches a part that arrived corrupt.
    _corrupt_part(store, monkeypatch, 1)
    with Transfers(store, chunk_size=CHUNK) as t, pytest.raises(ChecksumMismatch) as err:
        t.upload([(str(src), "again.bin")])
    assert str(src) in str(err.value)
    assert "multipart ETag" in str(err.value)


def _corrupt_range(store: S3Store, monkeypatch: pytest.MonkeyPatch, offset: int) -> None:
    """Flip the byte at ``offset`` of the file on its way in (in whichever
    piece of whichever ranged read carries it)."""
    read = store._read_into

    def flip(key: str, start: int, end: int, version: str | None, sink: Any) -> None:
        position = start

        def corrupting(data: bytes) -> None:
            nonlocal position
            at = offset - position
            if 0 <= at < len(data):
                data = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
            position += len(data)
            sink(data)

        read(key, start, end, version, corrupting)

    monkeypatch.setattr(store, "_read_into", flip)


def test_download_checks_the_crc32_without_md5(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, S3Store)
    src = _file(tmp_path)
    with Transfers(store, chunk_size=CHUNK) as t:
        t.upload([(str(src), "model.bin")])
    stat = store._stat_blob("model.bin")
    assert stat.crc32 and stat.etag and stat.etag.endswith("-3")

    def no_md5(data: Any) -> bytes:
        raise AssertionError("an MD5 was computed")

    monkeypatch.setattr(transfer, "md5_digest", no_md5)
    monkeypatch.setattr(transfer, "_file_md5", no_md5)
    with Transfers(store, chunk_size=CHUNK) as t:
        t.download([("model.bin", str(tmp_path / "back.bin"))])
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()

    _corrupt_range(store, monkeypatch, CHUNK)
    with Transfers(store, chunk_size=CHUNK) as t, pytest.raises(ChecksumMismatch) as err:
        t.download([("model.bin", str(tmp_path / "bad.bin"))])
    assert str(tmp_path / "bad.bin") in str(err.value)
    assert "CRC32" in str(err.value)
    assert not (tmp_path / "bad.bin").exists()


def test_download_without_crc32_checks_the_etag(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, S3Store)
    src = _file(tmp_path)
    with monkeypatch.context() as patch:
        _without_checksums(store, patch)
        with Transfers(store, chunk_size=CHUNK) as t:
            t.upload([(str(src), "model.bin")])
    assert store._stat_blob("model.bin").crc32 is None
    _corrupt_range(store, monkeypatch, 0)
    with Transfers(store, chunk_size=CHUNK) as t, pytest.raises(ChecksumMismatch) as err:
        t.download([("model.bin", str(tmp_path / "bad.bin"))])
    assert "multipart ETag" in str(err.value)
