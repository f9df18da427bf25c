"""Retries through the fault-injecting proxy, against the real emulators.

Each test routes a store through a FaultProxy in front of the emulator and
checks the outcome in the bucket itself (through a store that bypasses the
proxy), and the number of attempts in the proxy's counters: never the wall
clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlflow_bucket.storage import (
    AlreadyExists,
    ObjectStore,
    PermissionDenied,
    RetryPolicy,
    StorageError,
    TransientError,
)

BACKENDS = ["gcs", "s3"]


@pytest.fixture
def proxied(
    store_target: tuple[str, dict[str, Any], Any],
    open_target: Callable[..., ObjectStore],
    fault_proxy: Callable[..., Any],
) -> tuple[ObjectStore, ObjectStore, Any]:
    """(store through the proxy, store straight to the emulator, proxy)."""
    _, _, info = store_target
    proxy = fault_proxy(info.endpoint)
    return open_target(via=proxy), open_target(), proxy


def _requests(proxy: Any) -> int:
    return int(proxy.stats()["total"])


def test_a_burst_of_503s_and_resets_is_ridden_out(
    proxied: tuple[ObjectStore, ObjectStore, Any],
) -> None:
    store, direct, proxy = proxied
    proxy.fail(503, count=3)
    store.put("a", b"payload")
    proxy.reset(count=2, when="before")
    assert store.get("a") == b"payload"
    proxy.fail(429, count=2)
    assert [o.key for o in store.list_objects("")] == ["a"]
    assert direct.get("a") == b"payload"


def test_create_whose_answer_is_lost_succeeds_once(
    proxied: tuple[ObjectStore, ObjectStore, Any],
) -> None:
    store, direct, proxy = proxied
    # The emulator applies the create, then the client sees a 503: the
    # retry finds the object, recognises its writer token, and succeeds.
    proxy.fail(503, count=1, after_upstream=True)
    info = store.create("once", b"mine")
    assert info.size == 4
    assert direct.get("once") == b"mine"
    assert [o.key for o in direct.list_objects("")] == ["once"]
    # And a second create of the same key is still a conflict.
    with pytest.raises(AlreadyExists):
        store.create("once", b"again")


def test_create_whose_connection_resets_after_the_write_succeeds_once(
    proxied: tuple[ObjectStore, ObjectStore, Any],
) -> None:
    store, direct, proxy = proxied
    proxy.reset(count=1, when="after")
    store.create("reset", b"mine")
    assert direct.get("reset") == b"mine"


def test_a_reset_mid_download_is_retried(proxied: tuple[ObjectStore, ObjectStore, Any]) -> None:
    store, direct, proxy = proxied
    data = bytes(range(256)) * 4096  # 1 MiB
    direct.put("big", data)
    proxy.reset(count=1, when="mid_body")
    assert store.get("big") == data


def test_retries_stop_within_the_budget(
    store_target: tuple[str, dict[str, Any], Any],
    open_target: Callable[..., ObjectStore],
    fault_proxy: Callable[..., Any],
) -> None:
    _, _, info = store_target
    proxy = fault_proxy(info.endpoint)
    policy = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, deadline=30)
    store = open_target(via=proxy, retry=policy)
    proxy.fail(503, count=1000)
    before = _requests(proxy)
    with pytest.raises(TransientError) as err:
        store.put("never", b"x")
    assert _requests(proxy) - before == policy.max_attempts
    assert "503" in str(err.value) and "never" in str(err.value)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_non_retryable_errors_surface_at_once_naming_bucket_key_and_status(
    proxied: tuple[ObjectStore, ObjectStore, Any], status: int
) -> None:
    store, direct, proxy = proxied
    proxy.fail(status, count=1)
    before = _requests(proxy)
    with pytest.raises(StorageError) as err:
        store.put("denied/key", b"x")
    assert _requests(proxy) - before == 1
    message = str(err.value)
    assert store.bucket in message and "denied/key" in message and str(status) in message
    if status in (401, 403):
        assert isinstance(err.value, PermissionDenied)
    assert not direct.exists("denied/key")
