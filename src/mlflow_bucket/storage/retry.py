"""The one retry policy of the engine.

Backends make single attempts and classify failures (TransientError or a
permanent StorageError); this module decides whether and when to try again.
The cloud clients' own retry loops are switched off underneath (see
docs/storage.md), so attempts do not multiply.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from .errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and time.

    ``deadline`` bounds the whole operation including waits: a request that
    is still failing after it raises the last error instead of sleeping on.
    """

    max_attempts: int = 12
    initial_wait: float = 0.1
    max_wait: float = 8.0
    deadline: float = 120.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        deadline = os.environ.get("MLFLOW_BUCKET_RETRY_DEADLINE")
        attempts = os.environ.get("MLFLOW_BUCKET_RETRY_ATTEMPTS")
        base = cls()
        return cls(
            max_attempts=int(attempts) if attempts else base.max_attempts,
            initial_wait=base.initial_wait,
            max_wait=base.max_wait,
            deadline=float(deadline) if deadline else base.deadline,
        )

    def call(self, fn: Callable[[], T], describe: str) -> T:
        """Run ``fn`` until it succeeds, fails permanently, or the budget ends."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.debug(
                "retrying %s (attempt %d failed: %s); next in %.2fs",
                describe,
                state.attempt_number,
                exc,
                wait,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            wait=tenacity.wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait),
            stop=(
                tenacity.stop_after_attempt(self.max_attempts)
                | tenacity.stop_after_delay(self.deadline)
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)
