"""An artifact repository on each backend (memory, local, GCS and S3 emulators)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from mlflow_bucket_plugins.artifacts import BucketArtifactRepository, set_storage_options


def artifact_uri(store_target: tuple[str, dict[str, Any], Any], proxy: Any = None) -> str:
    """A fresh run-like artifact URI in the test's store; ``proxy`` routes it
    through a fault proxy."""
    uri, options, info = store_target
    if info is not None:
        opts = dict(info.via(proxy).storage_options) if proxy is not None else dict(options)
        set_storage_options(f"{info.scheme}://{info.bucket}", **opts)
    return f"{uri}/exp-1/{uuid.uuid4().hex[:8]}/artifacts"


@pytest.fixture
def repo(store_target: tuple[str, dict[str, Any], Any]) -> BucketArtifactRepository:
    return BucketArtifactRepository(artifact_uri(store_target))


@pytest.fixture
def make_repo(
    store_target: tuple[str, dict[str, Any], Any],
) -> Callable[..., BucketArtifactRepository]:
    """A fresh repository in the test's store, optionally ``via`` a fault proxy."""

    def make(via: Any = None) -> BucketArtifactRepository:
        return BucketArtifactRepository(artifact_uri(store_target, via))

    return make
