"""The retry policy and create-if-absent's writer token, in process.

The HTTP-level faults (503s, resets through the proxy) are in
test_faults.py; here a store whose primitives fail on cue pins the policy
itself, which no emulator can make fail deterministically enough.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from mlflow_bucket.storage import (
    AlreadyExists,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    RetryPolicy,
    TransientError,
)
from mlflow_bucket.storage.errors import error_for_status
from mlflow_bucket.storage.memory import MemoryStore, reset_memory_buckets

QUICK = RetryPolicy(max_attempts=6, initial_wait=0.001, max_wait=0.01, deadline=10)


class FlakyStore(MemoryStore):
    """Fails the next ``failures`` writes; ``applied`` ones land first."""

    def __init__(self, failures: int = 0, *, applied: bool = False) -> None:
        super().__init__("flaky", retry=QUICK)
        self.failures = failures
        self.applied = applied
        self.attempts = 0

    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            if self.applied:
                super()._create(key, data, metadata)
            raise TransientError("503 injected", operation="create", url=self.url(key))
        return super()._create(key, data, metadata)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    reset_memory_buckets()


def test_transient_failures_are_retried_until_success() -> None:
    store = FlakyStore(failures=3)
    store.create("k", b"v")
    assert store.attempts == 4
    assert store.get("k") == b"v"


def test_a_lost_answer_to_a_successful_create_is_success_not_conflict() -> None:
    # The first attempt wrote the object, then the answer was lost: the
    # retry sees "already exists", finds its own token, and succeeds.
    store = FlakyStore(failures=1, applied=True)
    info = store.create("k", b"mine")
    assert store.attempts == 2
    assert info.size == 4
    assert store.get("k") == b"mine"


def test_someone_elses_object_is_still_a_conflict_on_retry() -> None:
    store = FlakyStore()
    store.create("k", b"theirs")
    store.failures = 1
    with pytest.raises(AlreadyExists):
        store.create("k", b"mine")
    assert store.get("k") == b"theirs"


def test_attempts_are_bounded() -> None:
    store = FlakyStore(failures=100)
    with pytest.raises(TransientError):
        store.create("k", b"v")
    assert store.attempts == QUICK.max_attempts


def test_the_deadline_bounds_the_whole_operation() -> None:
    policy = RetryPolicy(max_attempts=1000, initial_wait=0.05, max_wait=0.05, deadline=0.2)
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("still down")

    with pytest.raises(TransientError):
        policy.call(failing, "op")
    # Full-jitter waits average 25 ms: far fewer calls than max_attempts.
    assert 1 < calls < 1000


def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    def denied() -> None:
        nonlocal calls
        calls += 1
        raise PermissionDenied("no", operation="put", url="gs://b/k", status=403)

    with pytest.raises(PermissionDenied):
        QUICK.call(denied, "op")
    assert calls == 1


def test_every_retry_is_logged_at_debug_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(failures=2)
    with caplog.at_level(logging.DEBUG, logger="mlflow_bucket.storage.retry"):
        store.create("k", b"v")
    retries = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(retries) == 2
    assert all("503 injected" in r.getMessage() for r in retries)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (408, "", TransientError),
        (429, "", TransientError),
        (500, "", TransientError),
        (502, "", TransientError),
        (503, "", TransientError),
        (504, "", TransientError),
        (409, "ConditionalRequestConflict", TransientError),
        (404, "", NotFound),
        (403, "", PermissionDenied),
    ],
)
def test_status_classification(status: int, code: str, kind: type) -> None:
    err = error_for_status(status, "msg", operation="put", url="s3://b/k", code=code)
    assert type(err) is kind
    assert "s3://b/k" in str(err) and str(status) in str(err)


def test_a_failed_precondition_is_a_conflict_only_for_create() -> None:
    create = error_for_status(412, "exists", operation="create", url="gs://b/k")
    delete = error_for_status(412, "generation", operation="delete", url="gs://b/k")
    assert isinstance(create, AlreadyExists)
    assert not isinstance(delete, AlreadyExists)
    assert not isinstance(error_for_status(409, "x", operation="put", url="u"), TransientError)
    assert not isinstance(error_for_status(400, "x", operation="put", url="u"), TransientError)
