"""Reading a whole tracking store through MLflow's own client.

Any URI MLflow can open is a source: a FileStore folder, a SQL database, a
tracking server, a bucket store. Everything is read with the public
``MlflowClient`` calls, so what is copied is what MLflow itself shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy
from mlflow.entities import Experiment, Run, ViewType
from mlflow.entities.logged_model import LoggedModel
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.tracking import MlflowClient

# Searches ask for this many items a page (the most MLflow's stores allow for runs).
PAGE = 1000
# Metric histories read at once (per-key calls: on a tracking server each is a request).
HISTORY_THREADS = 8


class Point(NamedTuple):
    """One point of a metric's history (lighter than MLflow's Metric: there are millions)."""

    value: float
    timestamp: int
    step: int


@dataclass
class RunRecord:
    """A run as MLflow shows it, with every point of every metric."""

    run: Run
    history: dict[str, list[Point]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)


def allow_file_store() -> None:
    """MLflow 3 refuses to open a FileStore unless asked: reading one is the point here."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _id_order(eid: str) -> tuple[int, Any]:
    # Numeric ids in numeric order (so a copy can create them in the same order).
    return (0, int(eid)) if eid.isdigit() else (1, eid)


class Source:
    """One tracking store (and its registry), read through MLflow's client."""

    def __init__(self, uri: str) -> None:
        allow_file_store()
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    # -- experiments and runs ----------------------------------------------------

    def experiments(self, names: list[str] | None = None) -> list[Experiment]:
        """Every experiment (deleted ones too), by id; only ``names`` if given."""
        out: list[Experiment] = []
        token = None
        while True:
            page = self.client.search_experiments(
                view_type=ViewType.ALL, max_results=PAGE, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                break
        if names is not None:
            wanted = set(names)
            missing = wanted - {e.name for e in out} - {str(e.experiment_id) for e in out}
            if missing:
                raise ValueError(f"no experiment named {sorted(missing)} in {self.uri}")
            out = [e for e in out if e.name in wanted or str(e.experiment_id) in wanted]
        return sorted(out, key=lambda e: _id_order(str(e.experiment_id)))

    def runs(self, experiment_id: str) -> list[Run]:
        """Every run of the experiment, deleted ones too (latest metrics only)."""
        out: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                run_view_type=ViewType.ALL,
                max_results=PAGE,
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                break
        return out

    def histories(self, runs: list[Run]) -> Iterator[RunRecord]:
        """The runs with their full metric histories, read a few at a time."""
        by_run = self._sql_histories(runs)
        if by_run is None:
            by_run = self._client_histories(runs)
        for run in runs:
            yield RunRecord(run, by_run.get(run.info.run_id, {}))

    def _client_histories(self, runs: list[Run]) -> dict[str, dict[str, list[Point]]]:
        calls = [(run.info.run_id, key) for run in runs for key in run.data.metrics]
        by_run: dict[str, dict[str, list[Point]]] = {}
        with ThreadPoolExecutor(HISTORY_THREADS, "mlflow-bucket-read") as pool:
            histories = pool.map(lambda c: self.client.get_metric_history(*c), calls)
            for (run_id, key), history in zip(calls, histories, strict=True):
                by_run.setdefault(run_id, {})[key] = [
                    Point(m.value, m.timestamp, m.step) for m in history
                ]
        return by_run

    def _sql_histories(self, runs: list[Run]) -> dict[str, dict[str, list[Point]]] | None:
        """From MLflow's SQL store: every point of the runs in one query, not a
        call per run and key (the same rows get_metric_history reads)."""
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        if not isinstance(store, SqlAlchemyStore) or not runs:
            return None
        by_run: dict[str, dict[str, list[Point]]] = {}
        table = SqlMetric.__table__
        query = sqlalchemy.select(
            table.c.run_uuid,
            table.c.key,
            table.c.value,
            table.c.timestamp,
            table.c.step,
            table.c.is_nan,
        ).where(table.c.run_uuid.in_([run.info.run_id for run in runs]))
        nan = float("nan")
        with store.ManagedSessionMaker() as session:
            for run_id, key, value, timestamp, step, is_nan in session.execute(query).all():
                point = Point(nan if is_nan else value, timestamp, step)
                by_run.setdefault(run_id, {}).setdefault(key, []).append(point)
        return by_run

    def logged_models(self, experiment_id: str) -> list[LoggedModel]:
        out: list[LoggedModel] = []
        token = None
        while True:
            page = self.client.search_logged_models(
                experiment_ids=[experiment_id], max_results=100, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                break
        return out

    # -- the registry -----------------------------------------------------------------

    def registered_models(self) -> list[RegisteredModel]:
        out: list[RegisteredModel] = []
        token = None
        while True:
            page = self.client.search_registered_models(max_results=PAGE, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda m: (m.creation_timestamp or 0, m.name))

    def versions(self, name: str) -> list[ModelVersion]:
        quote = '"' if "'" in name else "'"
        out: list[ModelVersion] = []
        token = None
        while True:
            page = self.client.search_model_versions(
                filter_string=f"name = {quote}{name}{quote}", max_results=PAGE, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda v: int(v.version))
