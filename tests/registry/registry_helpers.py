"""Helpers shared by the registry's tests: the same calls on MLflow's SQL registry and ours.

``Pair`` holds an SQL registry store and a bucket registry store, makes the
same call on both, and compares what a client would see: the normalised
entities, or the error codes. ``Clock`` gives both stores one time, moved
forward before each call, so that timestamps compare exactly.
"""

from __future__ import annotations

import inspect
import itertools
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins.mlflow_compat import dispose_sql_store
from mlflow_bucket_plugins.registry.store import BucketRegistryStore
from mlflow_bucket_plugins.tracking.backend import forget_backends

PROMPT = "mlflow.prompt.is_prompt"
# Calls that change nothing (by what their description starts with).
READS = ("get", "search", "all ", "uri")


# -- what the installed MLflow's SQL store does (older releases had bugs since fixed) ----------


def _sql_source(method: str) -> str:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    return inspect.getsource(getattr(SqlAlchemyStore, method))


# `latest` is the highest version (older: the latest of the first stage listed).
SQL_LATEST_IS_HIGHEST = "max(versions" in _sql_source("get_model_version_by_alias")
# An alias of a missing model is RESOURCE_DOES_NOT_EXIST (older: "alias not found").
SQL_ALIAS_CHECKS_MODEL = "_get_registered_model(session, name)" in _sql_source(
    "get_model_version_by_alias"
)
# `version_number = 1.5` or `= 'abc'` is refused (older: compared as given, matching nothing).
SQL_CHECKS_VERSION_VALUES = "isinstance(value, float)" in _sql_source(
    "_get_search_model_versions_filter_clauses"
)


# -- normalising what a client sees -------------------------------------------------------


def norm_version(mv: Any) -> tuple[Any, ...]:
    return (
        mv.name,
        int(mv.version),
        mv.creation_timestamp,
        mv.last_updated_timestamp,
        mv.description,
        mv.user_id,
        mv.current_stage,
        mv.source,
        mv.run_id,
        mv.status,
        mv.status_message,
        tuple(sorted(mv.tags.items())),
        mv.run_link,
        tuple(sorted(mv.aliases)),
        # model_id: the SQL store drops it (docs/registry.md), so it is not compared.
    )


def norm_model(rm: Any) -> tuple[Any, ...]:
    return (
        rm.name,
        rm.creation_timestamp,
        rm.last_updated_timestamp,
        rm.description,
        tuple(sorted(norm_version(mv) for mv in rm.latest_versions or [])),
        tuple(sorted(rm._tags.items())),
        tuple(sorted((a, int(v)) for a, v in rm.aliases.items())),
    )


class Mismatch(AssertionError):
    pass


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    @property
    def code(self) -> str | None:
        return self.error.error_code if isinstance(self.error, MlflowException) else None


def _call(fn: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(value=fn())
    except MlflowException as exc:
        return Outcome(error=exc)
    except Exception as exc:
        raise Mismatch(f"a store crashed: {exc!r}\n{traceback.format_exc()}") from exc


class Clock:
    """One time for both stores, moved forward before each call."""

    def __init__(self) -> None:
        self._steps = itertools.count(1_700_000_000_000, 1000)
        self.now = next(self._steps)

    def tick(self) -> None:
        self.now = next(self._steps)


@contextmanager
def shared_clock(clock: Clock) -> Iterator[Clock]:
    """Both stores read ``clock.now`` for every timestamp."""
    with (
        mock.patch(
            "mlflow.store.model_registry.sqlalchemy_store.get_current_time_millis",
            lambda: clock.now,
        ),
        mock.patch.object(BucketRegistryStore, "_now_ms", lambda self: clock.now),
    ):
        yield clock


class Pair:
    """An SQL registry and a bucket registry, called side by side."""

    def __init__(self, sql: Any, clock: Clock) -> None:
        self.sql = sql
        self.bucket = BucketRegistryStore(f"memory://rdiff-{uuid.uuid4().hex[:10]}/s")
        self.clock = clock
        self.calls = 0
        # Whether a call since the last check_everything may have changed something.
        self.dirty = True

    def close(self) -> None:
        dispose_sql_store(self.sql)
        forget_backends()

    def both(
        self,
        what: str,
        call: Callable[[Any], Any],
        tolerate: Callable[[Outcome, Outcome], bool] | None = None,
    ) -> tuple[Outcome, Outcome]:
        """The call on both stores; their errors must match, unless ``tolerate`` says the
        difference is a known one of the installed MLflow."""
        self.clock.tick()
        self.calls += 1
        if not what.startswith(READS):
            self.dirty = True
        sql = _call(lambda: call(self.sql))
        bucket = _call(lambda: call(self.bucket))
        if (sql.error is None) != (bucket.error is None) or sql.code != bucket.code:
            if tolerate is not None and tolerate(sql, bucket):
                return sql, bucket
            raise Mismatch(
                f"{what}: SQL store -> {sql.error!r} ({sql.code}), "
                f"bucket store -> {bucket.error!r} ({bucket.code})"
            )
        return sql, bucket

    @staticmethod
    def same(what: str, sql_value: Any, bucket_value: Any) -> None:
        if sql_value != bucket_value:
            raise Mismatch(f"{what}:\n  SQL:    {sql_value!r}\n  bucket: {bucket_value!r}")

    def compare(
        self,
        what: str,
        call: Callable[[Any], Any],
        norm: Callable[[Any], Any],
        tolerate: Callable[[Outcome, Outcome], bool] | None = None,
    ) -> tuple[Outcome, Outcome]:
        sql, bucket = self.both(what, call, tolerate)
        if sql.error is None and bucket.error is None:
            self.same(what, norm(sql.value), norm(bucket.value))
        return sql, bucket

    def ok(
        self, what: str, call: Callable[[Any], Any], norm: Callable[[Any], Any] | None = None
    ) -> Any:
        """The call must succeed on both, with the same result; the SQL store's value."""
        sql, _ = self.compare(what, call, norm or (lambda value: value))
        if sql.error is not None:
            raise Mismatch(f"{what}: both failed: {sql.error!r}")
        return sql.value

    def fails(self, what: str, call: Callable[[Any], Any]) -> str:
        """The call must fail on both with the same error code; that code."""
        sql, _ = self.both(what, call)
        if sql.error is None:
            raise Mismatch(f"{what}: both succeeded")
        return str(sql.code)

    def search_all(
        self,
        what: str,
        search: Callable[[Any, str | None], Any],
        norm: Callable[[Any], Any],
    ) -> list[Any]:
        """Page through a search on both; pages and tokens' presence must match."""
        tokens: dict[str, str | None] = {"sql": None, "bucket": None}
        items: list[Any] = []
        for page in range(60):

            def call(store: Any, tokens: dict[str, str | None] = tokens) -> Any:
                side = "sql" if store is self.sql else "bucket"
                return search(store, tokens[side])

            sql, bucket = self.compare(
                f"{what} page {page}",
                call,
                lambda res: ([norm(item) for item in res], res.token is None),
            )
            if sql.error is not None:
                return items
            items.extend(norm(item) for item in sql.value)
            if sql.value.token is None:
                return items
            tokens = {"sql": sql.value.token, "bucket": bucket.value.token}
        raise Mismatch(f"{what}: more than 60 pages")

    def check_everything(self, only_if_changed: bool = False) -> None:
        """Every registered model and model version, prompts included, page by page."""
        if only_if_changed and not self.dirty:
            return
        for prompt in (False, True):
            f = f"tags.`{PROMPT}` = 'true'" if prompt else None
            self.search_all(
                f"all registered models (prompts: {prompt})",
                lambda s, token, f=f: s.search_registered_models(f, 1000, None, token),
                norm_model,
            )
            self.search_all(
                f"all model versions (prompts: {prompt})",
                lambda s, token, f=f: s.search_model_versions(
                    f, 1000, ["name", "version_number"], token
                ),
                norm_version,
            )
        self.dirty = False
