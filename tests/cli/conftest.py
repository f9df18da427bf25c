"""Fixtures for the command-line tests: an isolated configuration and an in-process runner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Cli, Result, end_process

from mlflow_bucket.cli import main

# Every variable the configuration reads (tests/test_config.py lists them too).
CONFIG_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_BUCKET_URI",
    "MLFLOW_BUCKET_REGISTRY_URI",
    "MLFLOW_BUCKET_ARTIFACT_ROOT",
    "MLFLOW_BUCKET_SYNC",
    "MLFLOW_BUCKET_FLUSH_INTERVAL",
    "MLFLOW_BUCKET_REFRESH_INTERVAL",
    "MLFLOW_BUCKET_COMPACT_THRESHOLD",
    "MLFLOW_BUCKET_GC_RETENTION",
    "MLFLOW_BUCKET_AUTOCONFIG",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder as the working directory; own spool and cache; no user config."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_BUCKET_USER_CONFIG", "")
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    end_process()
    yield root
    end_process()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``mlflow-bucket ARGS`` in this process; its exit code and output."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def gcs_uri(gcs_env: object) -> str:
    """A fresh prefix in a GCS emulator bucket, with the emulator's variables set."""
    return f"{gcs_env.url}/p-{uuid.uuid4().hex[:8]}"  # type: ignore[attr-defined]
