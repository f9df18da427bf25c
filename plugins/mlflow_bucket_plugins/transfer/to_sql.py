"""Writing a copy into an SQL database MLflow can use (sqlite, postgresql, mysql).

MLflow's SQL stores make the schema (and migrate it); the rows are then
written with their own table classes (``mlflow.store.*.dbmodels``), a
chunk of runs per transaction, because their public calls would give every
run a new id and take one transaction per call. A chunk is atomic, so a run
is there whole or not at all, and what is there is skipped next time.
"""

from __future__ import annotations

import math
import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from mlflow.entities import Experiment, LifecycleStage
from mlflow.entities.logged_model import LoggedModel
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
from mlflow.store.model_registry.dbmodels import models as reg
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as SqlRegistry
from mlflow.store.tracking.dbmodels import models as db
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as SqlTracking
from mlflow.utils.time import get_current_time_millis
from sqlalchemy.orm import Session, sessionmaker

from .source import RunRecord

MAX_FLOAT = 1.7976931348623157e308


def default_artifact_root(uri: str) -> str:
    """Beside a sqlite file; other databases need one given."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "sqlite" and parsed.path not in ("", "/:memory:"):
        path = uri[len("sqlite:///") :]
        return os.path.join(os.path.dirname(os.path.abspath(path)), "artifacts")
    raise ValueError(f"give --artifact-root: where {uri} keeps its artifacts")


def _sanitized(value: float) -> tuple[float, bool]:
    # As MLflow's SQL store stores a value: NaN as 0 with is_nan, +/-inf as +/-max.
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (MAX_FLOAT if value > 0 else -MAX_FLOAT), False
    return float(value), False


def _column(query: Any) -> set[str]:
    return {str(row[0]) for row in query}


class SqlDestination:
    """An SQL database as the target of a copy."""

    def __init__(self, uri: str, artifact_root: str | None = None) -> None:
        self.uri = uri
        self.artifact_root = (artifact_root or default_artifact_root(uri)).rstrip("/")
        # Creates (or migrates) the schema and the default experiment.
        self.tracking = SqlTracking(uri, self.artifact_root)
        self.registry = SqlRegistry(uri)
        self._sessions = sessionmaker(bind=self.tracking.engine)
        self._locations: dict[str, str] = {}
        self._datasets: dict[tuple[int, str, str], str] = {}
        self.renumbered: dict[str, str] = {}
        self._rows: dict[Any, list[dict[str, Any]]] = {}
        self.deleted_time = get_current_time_millis()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # -- experiments -------------------------------------------------------------

    def experiment(self, exp: Experiment) -> str:
        src_id = str(exp.experiment_id)
        with self._session() as session:
            query = session.query(db.SqlExperiment)
            found: Any = (
                query.filter(db.SqlExperiment.experiment_id == 0).one_or_none()
                if src_id == "0"
                else query.filter(db.SqlExperiment.name == exp.name).one_or_none()
            )
            if found is None:
                wanted = int(src_id) if src_id.isdigit() else None
                if (
                    wanted is not None
                    and query.filter(db.SqlExperiment.experiment_id == wanted).one_or_none()
                ):
                    wanted = None
                found = db.SqlExperiment(
                    experiment_id=wanted,
                    name=exp.name,
                    lifecycle_stage=LifecycleStage.ACTIVE,
                    creation_time=exp.creation_time,
                    last_update_time=exp.last_update_time,
                )
                session.add(found)
                session.flush()
                found.artifact_location = f"{self.artifact_root}/{found.experiment_id}"
                if wanted is not None and session.bind is not None:
                    self._advance_sequence(session)
            eid = str(found.experiment_id)
            self._locations[eid] = str(found.artifact_location)
        if eid != src_id:
            self.renumbered[src_id] = eid
        return eid

    def _advance_sequence(self, session: Session) -> None:
        # PostgreSQL's id sequence does not see ids given explicitly.
        if self.tracking.engine.dialect.name == "postgresql":
            session.execute(
                sqlalchemy.text(
                    "SELECT setval(pg_get_serial_sequence('experiments', 'experiment_id'), "
                    "(SELECT MAX(experiment_id) FROM experiments))"
                )
            )

    def align(self, eid: str, exp: Experiment) -> None:
        with self._session() as session:
            row: Any = session.get(db.SqlExperiment, int(eid))
            assert row is not None
            have = {t.key: t for t in row.tags}
            for key, value in exp.tags.items():
                if key in have:
                    have[key].value = value
                else:
                    session.add(db.SqlExperimentTag(experiment_id=int(eid), key=key, value=value))
            row.name = exp.name
            row.lifecycle_stage = exp.lifecycle_stage
            if eid != "0":
                row.creation_time = exp.creation_time
                row.last_update_time = exp.last_update_time

    def _location(self, eid: str) -> str:
        if eid not in self._locations:
            with self._session() as session:
                row = session.get(db.SqlExperiment, int(eid))
                assert row is not None
                self._locations[eid] = str(row.artifact_location)
        return self._locations[eid]

    def run_artifact_uri(self, eid: str, run_id: str) -> str:
        return f"{self._location(eid)}/{run_id}/artifacts"

    def model_artifact_uri(self, eid: str, model_id: str) -> str:
        return f"{self._location(eid)}/models/{model_id}/artifacts"

    # -- runs and logged models ----------------------------------------------------

    def present(self, eid: str) -> tuple[set[str], set[str]]:
        with self._session() as session:
            runs = _column(
                session.query(db.SqlRun.run_uuid).filter(db.SqlRun.experiment_id == int(eid))
            )
            models = _column(
                session.query(db.SqlLoggedModel.model_id).filter(
                    db.SqlLoggedModel.experiment_id == int(eid)
                )
            )
        return runs, models

    def write(self, eid: str, records: list[RunRecord], models: list[LoggedModel]) -> None:
        self._rows = {
            table: [] for table in (db.SqlTag, db.SqlParam, db.SqlMetric, db.SqlLatestMetric)
        }
        with self._session() as session:
            for model in models:
                self._add_model(session, int(eid), model)
            for record in records:
                self._add_run(session, eid, record)
            session.flush()
            for table, rows in self._rows.items():
                if rows:
                    session.execute(sqlalchemy.insert(table), rows)
        self._rows = {}

    def _dataset(self, session: Session, eid: int, ds: Any) -> str:
        key = (eid, ds.name, ds.digest)
        if key not in self._datasets:
            row = (
                session.query(db.SqlDataset)
                .filter_by(experiment_id=eid, name=ds.name, digest=ds.digest)
                .one_or_none()
            )
            if row is None:
                row = db.SqlDataset(
                    dataset_uuid=uuid.uuid4().hex,
                    experiment_id=eid,
                    name=ds.name,
                    digest=ds.digest,
                    dataset_source_type=ds.source_type,
                    dataset_source=ds.source,
                    dataset_schema=ds.schema,
                    dataset_profile=ds.profile,
                )
                session.add(row)
            self._datasets[key] = str(row.dataset_uuid)
        return self._datasets[key]

    def _add_run(self, session: Session, eid: str, record: RunRecord) -> None:
        run = record.run
        info, data = run.info, run.data
        run_id = record.run_id
        deleted = info.lifecycle_stage == LifecycleStage.DELETED
        session.add(
            db.SqlRun(
                run_uuid=run_id,
                name=info.run_name,
                source_type="UNKNOWN",
                source_name="",
                entry_point_name="",
                user_id=info.user_id,
                status=info.status,
                start_time=info.start_time,
                end_time=info.end_time,
                deleted_time=self.deleted_time if deleted else None,
                source_version="",
                lifecycle_stage=info.lifecycle_stage,
                artifact_uri=self.run_artifact_uri(eid, run_id),
                experiment_id=int(eid),
            )
        )
        # The run row first: the others refer to it.
        session.flush()
        # Rows by the thousand: one executemany per table, not an object each.
        rows = self._rows
        rows[db.SqlTag].extend(
            {"key": k, "value": v, "run_uuid": run_id} for k, v in data.tags.items()
        )
        rows[db.SqlParam].extend(
            {"key": k, "value": v, "run_uuid": run_id} for k, v in data.params.items()
        )
        for key, history in record.history.items():
            points: dict[tuple[Any, ...], tuple[float, bool, int, int]] = {}
            for m in history:
                number, is_nan = _sanitized(m.value)
                points.setdefault(
                    (m.timestamp, m.step, number, is_nan), (number, is_nan, m.timestamp, m.step)
                )
            latest: tuple[float, bool, int, int] | None = None
            for number, is_nan, timestamp, step in points.values():
                rows[db.SqlMetric].append(
                    {
                        "key": key,
                        "value": number,
                        "timestamp": timestamp,
                        "step": step,
                        "is_nan": is_nan,
                        "run_uuid": run_id,
                    }
                )
                # The SQL store's latest value: the greatest (step, timestamp, value).
                if latest is None or (step, timestamp, number) > (latest[3], latest[2], latest[0]):
                    latest = (number, is_nan, timestamp, step)
            if latest is not None:
                rows[db.SqlLatestMetric].append(
                    {
                        "key": key,
                        "value": latest[0],
                        "timestamp": latest[2],
                        "step": latest[3],
                        "is_nan": latest[1],
                        "run_uuid": run_id,
                    }
                )
        inputs = run.inputs
        for d in (inputs.dataset_inputs if inputs else None) or []:
            dataset_uuid = self._dataset(session, int(eid), d.dataset)
            input_uuid = uuid.uuid4().hex
            session.add(
                db.SqlInput(
                    input_uuid=input_uuid,
                    source_type="DATASET",
                    source_id=dataset_uuid,
                    destination_type="RUN",
                    destination_id=run_id,
                )
            )
            for tag in d.tags:
                session.add(db.SqlInputTag(input_uuid=input_uuid, name=tag.key, value=tag.value))
        for m in getattr(inputs, "model_inputs", None) or []:
            session.add(
                db.SqlInput(
                    input_uuid=uuid.uuid4().hex,
                    source_type="RUN_INPUT",
                    source_id=run_id,
                    destination_type="MODEL_INPUT",
                    destination_id=m.model_id,
                )
            )
        outputs = getattr(run, "outputs", None)
        for o in getattr(outputs, "model_outputs", None) or []:
            session.add(
                db.SqlInput(
                    input_uuid=uuid.uuid4().hex,
                    source_type="RUN_OUTPUT",
                    source_id=run_id,
                    destination_type="MODEL_OUTPUT",
                    destination_id=o.model_id,
                    step=o.step,
                )
            )

    def _add_model(self, session: Session, eid: int, model: LoggedModel) -> None:
        ident = model.model_id
        session.add(
            db.SqlLoggedModel(
                model_id=ident,
                experiment_id=eid,
                name=model.name,
                artifact_location=self.model_artifact_uri(str(eid), ident),
                creation_timestamp_ms=model.creation_timestamp,
                last_updated_timestamp_ms=model.last_updated_timestamp,
                status=LoggedModelStatus(model.status).to_int(),
                lifecycle_stage=LifecycleStage.ACTIVE,
                model_type=model.model_type,
                source_run_id=model.source_run_id,
                status_message=model.status_message,
            )
        )
        session.flush()
        for key, value in model.params.items():
            session.add(
                db.SqlLoggedModelParam(
                    model_id=ident, experiment_id=eid, param_key=key, param_value=value
                )
            )
        for key, value in model.tags.items():
            session.add(
                db.SqlLoggedModelTag(
                    model_id=ident, experiment_id=eid, tag_key=key, tag_value=value
                )
            )
        for m in model.metrics or []:
            number, _ = _sanitized(m.value)
            session.add(
                db.SqlLoggedModelMetric(
                    model_id=ident,
                    metric_name=m.key,
                    metric_timestamp_ms=m.timestamp,
                    metric_step=m.step,
                    metric_value=None if math.isnan(m.value) else number,
                    experiment_id=eid,
                    run_id=m.run_id or "",
                    dataset_uuid=None,
                    dataset_name=m.dataset_name,
                    dataset_digest=m.dataset_digest,
                )
            )

    # -- the registry ------------------------------------------------------------------

    def registered_names(self) -> set[str]:
        with self._session() as session:
            return _column(session.query(reg.SqlRegisteredModel.name))

    def write_registered(
        self,
        model: RegisteredModel,
        versions: list[ModelVersion],
        relocate: Callable[[ModelVersion], tuple[str, str]],
    ) -> None:
        name = model.name
        with self._session() as session:
            session.add(
                reg.SqlRegisteredModel(
                    name=name,
                    creation_time=model.creation_timestamp,
                    last_updated_time=model.last_updated_timestamp,
                    description=model.description,
                )
            )
            session.flush()
            for key, value in model.tags.items():
                session.add(reg.SqlRegisteredModelTag(name=name, key=key, value=value))
            by_number = {int(v.version): v for v in versions}
            for number in range(1, max(by_number, default=0) + 1):
                v = by_number.get(number)
                if v is None:
                    # The SQL store keeps a deleted version as a row of this stage.
                    session.add(
                        reg.SqlModelVersion(
                            name=name,
                            version=number,
                            creation_time=self.deleted_time,
                            last_updated_time=self.deleted_time,
                            current_stage=STAGE_DELETED_INTERNAL,
                            source="",
                        )
                    )
                    continue
                source, storage = relocate(v)
                session.add(
                    reg.SqlModelVersion(
                        name=name,
                        version=number,
                        creation_time=v.creation_timestamp,
                        last_updated_time=v.last_updated_timestamp,
                        description=v.description,
                        user_id=v.user_id,
                        current_stage=v.current_stage,
                        source=source,
                        storage_location=storage,
                        run_id=v.run_id or None,
                        run_link=v.run_link or None,
                        status=v.status,
                        status_message=v.status_message,
                    )
                )
                session.flush()
                for key, value in v.tags.items():
                    session.add(
                        reg.SqlModelVersionTag(name=name, version=number, key=key, value=value)
                    )
            for alias, version in (model.aliases or {}).items():
                session.add(
                    reg.SqlRegisteredModelAlias(name=name, alias=alias, version=int(version))
                )

    def close(self) -> None:
        self.tracking.engine.dispose()
        self.registry.engine.dispose()
