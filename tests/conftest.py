"""Shared fixtures: a store of each backend, opened fresh per test.

The emulator fixtures (gcs_bucket, s3_bucket, fault_proxy) come from the
project's own pytest plugin, mlflow_bucket.testing.pytest_plugin.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mlflow_bucket.storage import ObjectStore, RetryPolicy, open_store
from mlflow_bucket.storage.memory import reset_memory_buckets

BACKENDS = ["memory", "local", "gcs", "s3"]

# A policy that gives up quickly, so that fault tests stay fast.
FAST_RETRY = RetryPolicy(max_attempts=8, initial_wait=0.01, max_wait=0.2, deadline=20)

StoreFactory = Callable[..., ObjectStore]


@pytest.fixture(autouse=True)
def _no_state_left_for_later_tests() -> Iterator[None]:
    """Each test leaves os.environ and MLflow's fluent state as it found them.

    MLflow's set_tracking_uri and set_experiment also write os.environ
    (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID) for child processes: left
    there, one test's store and experiment reach every later test's
    subprocesses, which then log to the wrong place.
    """
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
    if "mlflow" in sys.modules:
        from mlflow_bucket_plugins.mlflow_compat import reset_fluent_state

        reset_fluent_state()


@pytest.fixture(autouse=True)
def _gcsfs_without_grpc_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # gcsfs 2026.x otherwise probes the bucket type over gRPC for 60 s.
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture
def store_target(
    request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(uri, storage options, BucketInfo or None) of a fresh empty store."""
    backend = request.param
    root = f"t-{uuid.uuid4().hex[:8]}"
    if backend == "memory":
        reset_memory_buckets()
        yield f"memory://bucket-{uuid.uuid4().hex[:8]}/{root}", {}, None
    elif backend == "local":
        yield str(tmp_path / "store"), {}, None
    else:
        info = request.getfixturevalue(f"{backend}_bucket")
        yield f"{info.scheme}://{info.bucket}/{root}", dict(info.storage_options), info


@pytest.fixture
def open_target(store_target: tuple[str, dict[str, Any], Any]) -> Iterator[StoreFactory]:
    """Opens the test's store; ``via`` a FaultProxy routes it through the proxy."""
    uri, options, info = store_target
    opened: list[ObjectStore] = []

    def make(*, via: Any = None, retry: RetryPolicy | None = FAST_RETRY) -> ObjectStore:
        opts = dict(options)
        if via is not None:
            opts = dict(info.via(via).storage_options)
        store = open_store(uri, retry=retry, **opts)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_target: StoreFactory) -> ObjectStore:
    return open_target()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests that use a store run once per backend; a module narrows the
    # set with a module-level BACKENDS list.
    if "store_target" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", BACKENDS)
        metafunc.parametrize("store_target", backends, indirect=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", help="also run tests marked slow (soak, large files)"
    )
    parser.addoption(
        "--soak",
        action="store_true",
        help="run tests/reliability at the full sizes (also MLFLOW_BUCKET_SOAK=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
