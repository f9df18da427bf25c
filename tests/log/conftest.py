"""Fixtures for the log's tests.

The ``store`` fixture (tests/conftest.py) runs every test on memory, local,
gcs and s3; the last two against the emulators over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlflow_bucket.log import Log, ObjectCache
from mlflow_bucket.storage import ObjectStore


@pytest.fixture
def log(store: ObjectStore) -> Log:
    return Log(store, "exp/7", cache=None)


@pytest.fixture
def cache(tmp_path: Any) -> ObjectCache:
    return ObjectCache(tmp_path / "cache")
