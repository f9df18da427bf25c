"""Fixtures for the tracking store's tests.

Every test gets fresh Backends and its own spool and cache folders, so
that nothing leaks between tests or into the user's real folders.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow_bucket_plugins.tracking.backend import forget_backends

from mlflow_bucket.storage.memory import reset_memory_buckets


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


@pytest.fixture
def memory_uri() -> str:
    """A fresh memory:// store URI."""
    reset_memory_buckets()
    return f"memory://t-{uuid.uuid4().hex[:8]}/mlflow"


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
    """Makes fresh SqlAlchemyStores, each from a copy of the migrated template."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    def make() -> Any:
        path = tmp_path / f"sql-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(sqlite_template, path)
        return SqlAlchemyStore(f"sqlite:///{path}", str(tmp_path / "artifacts"))

    return make
