"""A large artifact through the fault proxy: 503s and connection resets in the
middle of the upload and of the download, and still the same bytes, with at
most about one chunk re-sent per fault.

The proxy counts requests; every upload request holds at most one chunk, so
requests beyond the clean run's bound one re-sent chunk each; a download's
ranged GET resumes at the first byte it has not received, so a fault there
re-sends at most what was in flight.
The 40 MB run is in the default suite; the 300 MB one is marked slow
(``--run-slow``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from mlflow_bucket_plugins.artifacts import BucketArtifactRepository

from mlflow_bucket.storage.transfer import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONCURRENCY,
    _ranges,
    _split,
)

BACKENDS = ["gcs", "s3"]
MB = 1000 * 1000


def _big_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            # Each MiB differs, so parts swapped or repeated would be caught.
            piece = (written.to_bytes(8, "big") + block)[: min(1 << 20, size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _faults(stats: dict[str, Any]) -> int:
    return sum(int(n) for n in stats["faults"].values())


def _requests(stats: dict[str, Any], *methods: str) -> int:
    return sum(int(stats["by_method"].get(m, 0)) for m in methods)


def _round_trip_with_faults(
    store_target: Any, make_repo: Any, fault_proxy: Any, tmp_path: Path, size: int
) -> None:
    _, _, info = store_target
    proxy = fault_proxy(info.endpoint)
    repo: BucketArtifactRepository = make_repo(via=proxy)
    src = tmp_path / "model.bin"
    expected = _big_file(src, size)
    parts = -(-size // DEFAULT_CHUNK_SIZE)

    # Upload: 503s, resets before forwarding and after the store applied the
    # write, spread over the data-carrying requests.
    writes = ["PUT", "POST"]
    proxy.seed(7)
    proxy.fail(503, count=2, fraction=0.3, methods=writes)
    proxy.reset(count=2, fraction=0.3, when="before", methods=writes)
    proxy.reset(count=1, fraction=0.3, when="after", methods=writes)
    repo.log_artifact(str(src), "model")
    up = proxy.stats()
    proxy.clear()
    # A clean run sends one request per part, plus: S3 a start and a
    # completion; GCS one compose, and one per 32 parts before it when the
    # parts are more than a compose takes.
    overhead = 2 if info.scheme == "s3" else 1 + (-(-parts // 32) if parts > 32 else 0)
    assert _faults(up) >= 3, up
    assert _requests(up, *writes) <= parts + overhead + _faults(up), up

    proxy.reset_stats()
    proxy.fail(503, count=2, fraction=0.3, methods=["GET"])
    proxy.reset(count=2, fraction=0.3, when="mid_body", methods=["GET"])
    dst = tmp_path / "out"
    dst.mkdir()
    got = Path(repo.download_artifacts("model/model.bin", str(dst)))
    down = proxy.stats()
    assert _faults(down) >= 2, down
    # One GET per range (a few parts each), plus a listing and a metadata
    # read; a fault costs one GET more, which resumes where the bytes stopped.
    ranges = len(_ranges(_split(size, DEFAULT_CHUNK_SIZE), DEFAULT_CONCURRENCY))
    assert _requests(down, "GET", "HEAD") <= ranges + 3 + _faults(down), down
    assert _sha256(got) == expected
    assert sorted(p.name for p in dst.joinpath("model").iterdir()) == ["model.bin"]
    # Nothing temporary is left in the bucket.
    assert [f.path for f in repo.list_artifacts("model")] == ["model/model.bin"]


def test_40mb_with_resets_and_503s(
    store_target: Any, make_repo: Any, fault_proxy: Any, tmp_path: Path
) -> None:
    _round_trip_with_faults(store_target, make_repo, fault_proxy, tmp_path, 40 * MB)


@pytest.mark.slow
def test_300mb_with_resets_and_503s(
    store_target: Any, make_repo: Any, fault_proxy: Any, tmp_path: Path
) -> None:
    _round_trip_with_faults(store_target, make_repo, fault_proxy, tmp_path, 300 * MB)
