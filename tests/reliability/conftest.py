"""The reliability suite: profiles, isolation, and the tracking tests' helpers.

Short profile by default (CI); the issue's full sizes with ``--soak`` or
MLFLOW_BUCKET_SOAK=1. Each test appends the figures it measured to the
JSON-lines file named by MLFLOW_BUCKET_RELIABILITY_LOG, if set (what
docs/reliability.md reports).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The tracking tests' child-process helpers (tests/ has no packages).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracking"))

from mlflow_bucket_plugins.tracking.backend import forget_backends


@dataclass(frozen=True)
class Profile:
    name: str
    writers: int
    runs: int
    steps: int
    # Seconds of "training" between two points of a writer.
    pause_s: float
    outage_s: float
    # How long gc keeps log objects in the load test: more than any pause of
    # an appender between its listing and its create (a stall, an outage).
    retention_s: float
    crash_rounds: int
    examples: int


SHORT = Profile(
    "short",
    writers=3,
    runs=3,
    steps=40,
    pause_s=0.03,
    outage_s=4,
    retention_s=15,
    crash_rounds=1,
    examples=60,
)
SOAK = Profile(
    "soak",
    writers=16,
    runs=50,
    steps=500,
    pause_s=0.0,
    outage_s=60,
    retention_s=200,
    crash_rounds=5,
    examples=1000,
)


def soak_requested(config: pytest.Config) -> bool:
    return (
        bool(config.getoption("--soak", default=False))
        or os.environ.get("MLFLOW_BUCKET_SOAK") == "1"
    )


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> Profile:
    return SOAK if soak_requested(request.config) else SHORT


@pytest.fixture
def record_figures(request: pytest.FixtureRequest, profile: Profile) -> Callable[..., None]:
    """Print the figures a test measured, and append them to the report log if set."""

    def record(**figures: Any) -> None:
        line = {"test": request.node.nodeid, "profile": profile.name, **figures}
        print("\nFIGURES", json.dumps(line))
        target = os.environ.get("MLFLOW_BUCKET_RELIABILITY_LOG")
        if target:
            with open(target, "a") as f:
                f.write(json.dumps(line) + "\n")

    return record


@pytest.fixture(autouse=True)
def _isolated_tracking(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    base = tmp_path_factory.mktemp("bucket-state")
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(base / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(base / "cache"))
    forget_backends()
    yield
    forget_backends()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with MLflow's schema, migrated once: copies open in milliseconds."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
    store.engine.dispose()
    return path


@pytest.fixture
def make_sqlite_store(sqlite_template: Path, tmp_path: Path) -> Callable[[], Any]:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    def make() -> Any:
        path = tmp_path / f"sql-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(sqlite_template, path)
        return SqlAlchemyStore(f"sqlite:///{path}", str(tmp_path / "artifacts"))

    return make
