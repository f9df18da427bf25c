"""Races between processes, on stores that honour create-if-absent (the GCS and S3
emulators over HTTP, a local folder): each process is another machine as far as the
store knows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

WORKER = Path(__file__).with_name("registry_worker.py")
PROCESSES = 8
VERSIONS_EACH = 5


def _store_uri(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[str, dict[str, str]]:
    if backend == "local":
        return f"bucket+file://{tmp_path / 'store'}", {}
    info = request.getfixturevalue(f"{backend}_env")
    return f"{info.url}/mlflow", dict(info.env)


def run_workers(
    commands: list[list[str]], env: dict[str, str], tmp_path: Path
) -> list[dict[str, Any]]:
    """Start every worker, let them all go at once, return what each printed."""
    go = tmp_path / "go"
    procs = []
    for i, command in enumerate(commands):
        worker_env = {
            **os.environ,
            **env,
            "MLFLOW_BUCKET_SPOOL_DIR": str(tmp_path / f"spool-{i}"),
            "MLFLOW_BUCKET_CACHE_DIR": str(tmp_path / f"cache-{i}"),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *command, str(go)],
                env=worker_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < len(procs):
        assert time.monotonic() < deadline, "workers never got ready"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


@pytest.mark.emulator
@pytest.mark.parametrize(
    "backend",
    [
        "gcs",
        pytest.param("s3", marks=pytest.mark.slow),
        pytest.param("local", marks=pytest.mark.slow),
    ],
)
def test_eight_processes_register_one_model_without_gaps_or_duplicates(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    uri, env = _store_uri(backend, request, tmp_path)
    outputs = run_workers(
        [["register", uri, "shared", str(VERSIONS_EACH)] for _ in range(PROCESSES)],
        env,
        tmp_path,
    )
    # One creator of the name; everyone else was told it exists.
    assert sum(bool(o["created"]) for o in outputs) == 1
    numbers = sorted(n for o in outputs for n in o["versions"])
    assert numbers == list(range(1, PROCESSES * VERSIONS_EACH + 1))
    # Each process saw its own versions in increasing order.
    for o in outputs:
        assert o["versions"] == sorted(o["versions"])
    # A fresh reader sees the same: every number once, each with its own source.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.search_model_versions("name = 'shared'", max_results=1000)
    assert sorted(int(v.version) for v in found) == numbers
    assert len({v.source for v in found}) == len(numbers)
