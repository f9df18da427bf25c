"""Parent-side helpers of the reliability suite (imported by name: tests/ has no packages)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tracking_workers
from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import close_backends

from mlflow_bucket.testing.pytest_plugin import BucketInfo

WORKERS = Path(__file__).resolve().parent / "reliability_workers.py"
T = TypeVar("T")


def start(
    command: str, args: Mapping[str, Any], env: Mapping[str, str], prefix: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """A child running reliability_workers.py; tracking_workers' wait_line/finish read it."""
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        [*prefix, sys.executable, str(WORKERS), command, json.dumps(args)],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    tracking_workers._ERR[proc.pid] = err
    return proc


def fresh() -> None:
    """The previous "process" exits; none of its Backends or store instances is left."""
    close_backends()
    # MLflow caches one store instance per URI; each holds its Backend.
    forget_store_instances()


def in_process(bucket: BucketInfo, call: Callable[[], T], spool: Path | None = None) -> T:
    """``call()`` here as in a new process: the bucket's environment, fresh Backends,
    an empty cache, and a spool folder of its own unless given."""
    with pytest.MonkeyPatch.context() as env, tempfile.TemporaryDirectory() as state:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.delenv(name, raising=False)
        for name, value in bucket.env.items():
            env.setenv(name, value)
        env.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(spool or Path(state) / "spool"))
        env.setenv("MLFLOW_BUCKET_CACHE_DIR", f"{state}/cache")
        fresh()
        try:
            return call()
        finally:
            fresh()


def spooled(state: Path) -> list[Path]:
    """Batches still waiting in a machine's spool folder."""
    return sorted((state / "spool").rglob("*.json"))
