"""Fixtures for the model registry's tests.

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
from mlflow_bucket_plugins.mlflow_compat import dispose_sql_store
from mlflow_bucket_plugins.tracking.backend import forget_backends

from mlflow_bucket.storage.memory import reset_memory_buckets


@pytest.fixture(autouse=True)
def _isolated_registry(
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
    return f"memory://r-{uuid.uuid4().hex[:8]}/mlflow"


@pytest.fixture(scope="session")
def registry_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with MLflow's schema, migrated once: copies open in milliseconds."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("registry-sqlite-template") / "template.db"
    store = SqlAlchemyStore(f"sqlite:///{path}")
    dispose_sql_store(store)
    return path


@pytest.fixture
def make_sql_registry(registry_sqlite_template: Path, tmp_path: Path) -> Callable[[], Any]:
    """Makes fresh SQL registry stores, each on a copy of the migrated template."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    def make() -> Any:
        path = tmp_path / f"registry-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(registry_sqlite_template, path)
        return SqlAlchemyStore(f"sqlite:///{path}")

    return make
