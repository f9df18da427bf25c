"""``BucketTrackingStore``: MLflow's tracking store API on the engine's logs.

Validation, errors and search semantics are MLflow's own (its validators
and SearchUtils), so that the client and the UI see what MLflow's SQL store
would give them; deliberate differences are listed in docs/tracking.md.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mlflow.entities import (
    DatasetInput,
    Experiment,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.entities.logged_model import LoggedModel
from mlflow.entities.logged_model_input import LoggedModelInput
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.entities.logged_model_parameter import LoggedModelParameter
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.entities.logged_model_tag import LoggedModelTag
from mlflow.entities.metric import MetricWithRunId
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT, SEARCH_MAX_RESULTS_THRESHOLD
from mlflow.store.tracking.abstract_store import AbstractStore
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_LOGGED_MODELS, MLFLOW_RUN_NAME
from mlflow.utils.search_utils import (
    SearchUtils,
)
from mlflow.utils.time import get_current_time_millis

from mlflow_bucket.marker import MARKER_KEY, UnknownFormat
from mlflow_bucket.storage import StorageError

from .. import mlflow_compat as compat
from ..storage_errors import storage_errors_as_mlflow
from . import entities, search
from .backend import Backend, backend_for
from .fold import DEFAULT_EXPERIMENT_ID, experiment_id_for, metric_point, register_value
from .unsupported_calls import fill_tracking_unsupported

_parse_experiment_id = search.parse_experiment_id


def _validate_max_results(max_results: Any, allow_null: bool = False) -> None:
    if (not allow_null and max_results is None) or (
        max_results is not None and (not isinstance(max_results, int) or max_results < 1)
    ):
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer",
            INVALID_PARAMETER_VALUE,
        )
    if max_results is not None and max_results > SEARCH_MAX_RESULTS_THRESHOLD:
        raise MlflowException(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {SEARCH_MAX_RESULTS_THRESHOLD}",
            INVALID_PARAMETER_VALUE,
        )


def _by_time(point: list[Any]) -> tuple[Any, ...]:
    # A stored point is [value, is_nan, timestamp, step].
    return (point[2], point[3], point[0], point[1])


def _by_step(point: list[Any]) -> tuple[Any, ...]:
    return (point[3], point[2], point[0], point[1])


def _stages(view_type: int) -> list[str]:
    return list(LifecycleStage.view_type_to_stages(view_type))


_INT64_MIN, _INT64_END = -(2**63), 2**63


def _validate_int64(metrics: list[Metric]) -> None:
    """Steps and timestamps must fit MLflow's protobuf int64 fields.

    Stored, a larger one would make every answer that carries the run
    (runs/search, runs/get, the metric pages) fail to serialise. MLflow's
    SQL store refuses it too, with a database error (INTERNAL_ERROR); this
    says what is wrong (docs/tracking.md).
    """
    for m in metrics:
        for field, value in (("timestamp", m.timestamp), ("step", m.step)):
            if not _INT64_MIN <= value < _INT64_END:
                raise MlflowException(
                    f"Invalid value {value} for metric '{m.key}' {field}: "
                    "it must fit in a 64-bit signed integer",
                    INVALID_PARAMETER_VALUE,
                )


def _model_strings(kind: str, items: Sequence[Any]) -> dict[str, str]:
    """A logged model's params or tags as MLflow's SQL store keeps them: ``str(value)``.

    It refuses a missing key or value (its columns are NOT NULL) with
    BAD_REQUEST; stored as given, an int came back as an int to this process
    and made the entry unreadable to every other one.
    """
    out: dict[str, str] = {}
    for item in items:
        if item.key is None or item.value is None:
            raise MlflowException(
                f"A logged model {kind} needs a key and a value, got "
                f"key={item.key!r}, value={item.value!r}",
                BAD_REQUEST,
            )
        out[str(item.key)] = str(item.value)
    return out


@storage_errors_as_mlflow
@fill_tracking_unsupported
class BucketTrackingStore(AbstractStore):
    """MLflow tracking store whose whole state lives in a bucket."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        super().__init__()
        self.store_uri = store_uri
        try:
            self.backend: Backend = backend_for(store_uri)
        except UnknownFormat as exc:
            raise MlflowException(str(exc), INVALID_STATE) from None
        # Where new experiments go. `mlflow server` hands every store its proxy root
        # (``mlflow-artifacts:/``, served from a folder on the server's machine) when
        # it serves artifacts, its default: a bucket keeps its artifacts in the
        # bucket, where every direct reader finds them (docs/ui.md).
        if artifact_uri and urllib.parse.urlsplit(artifact_uri).scheme == "mlflow-artifacts":
            artifact_uri = None
        self.artifact_root_uri = (artifact_uri or self.backend.artifact_root).rstrip("/")
        # Where experiments that name no root of their own keep theirs.
        self.default_root_uri = self.backend.default_artifact_root
        # Run entities by (run id, the doc's revision): a warm search builds
        # only what changed since the last one.
        self._run_cache: dict[str, tuple[tuple[Any, ...], Run]] = {}
        self._created_ms: int | None = None

    # -- experiments -------------------------------------------------------------

    def _experiments(self, fresh: bool = False, wait: float | None = None) -> dict[str, Any]:
        return self.backend.experiments_state(fresh, wait)["exps"]

    def _experiment_doc(self, experiment_id: Any, view_type: int = ViewType.ALL) -> tuple[str, Any]:
        # MLflow's SQL store reads any empty id ("", None) as the default experiment.
        eid = _parse_experiment_id(experiment_id or DEFAULT_EXPERIMENT_ID)
        doc = self._experiments().get(eid)
        if doc is None:
            # Created by another process since our last look?
            doc = self._experiments(fresh=True).get(eid)
        if doc is None or doc["stage"] not in _stages(view_type):
            raise MlflowException(f"No Experiment with id={eid} exists", RESOURCE_DOES_NOT_EXIST)
        return eid, doc

    def _experiment_exists(self, eid: str, wait: float | None = None) -> bool:
        return eid in self._experiments(wait=wait) or eid in self._experiments(fresh=True)

    def _experiment_entity(self, eid: str, doc: dict[str, Any]) -> Experiment:
        if eid == DEFAULT_EXPERIMENT_ID and (doc.get("ctime") is None or doc.get("mtime") is None):
            # No entry creates "Default": like MLflow's SQL store, it dates from the
            # store's creation, which the format marker records.
            created = self._store_created_ms()
            doc = {
                **doc,
                "ctime": doc.get("ctime") or created,
                "mtime": doc.get("mtime") or created,
            }
        return entities.to_experiment(eid, doc, self.default_root_uri)

    def _store_created_ms(self) -> int | None:
        if self._created_ms is None:
            try:
                updated = self.backend.store.head(MARKER_KEY).updated
            except StorageError:
                updated = None
            if updated is not None:
                self._created_ms = int(updated.timestamp() * 1000)
        return self._created_ms

    def _experiment_location(self, eid: str) -> str:
        _, doc = self._experiment_doc(eid)
        return entities.experiment_artifact_location(doc, eid, self.default_root_uri)

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        _validate_max_results(max_results)
        stages = _stages(view_type)
        experiments = [
            self._experiment_entity(eid, doc)
            for eid, doc in self._experiments().items()
            if doc["stage"] in stages
        ]
        page, token = search.search_experiments(
            experiments, filter_string, order_by, max_results, page_token
        )
        return PagedList(page, token)

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Sequence[Any] | None = None,
    ) -> str:
        compat.validate_experiment_name(name)
        if artifact_location:
            compat.validate_experiment_artifact_location_length(artifact_location)
        for tag in tags or []:
            compat.validate_experiment_tag(tag.key, tag.value)
        if name in self.backend.experiments_state(fresh=True)["names"]:
            raise MlflowException(
                f"Experiment(name={name}) already exists.", RESOURCE_ALREADY_EXISTS
            )
        entry = {
            "op": "exp.create",
            "name": name,
            "loc": artifact_location or None,
            # The id is known once the entry is in the log: the root is stored, and
            # every reader appends the id (entities.experiment_artifact_location).
            "root": None if artifact_location else self.artifact_root_uri,
            "tags": {t.key: t.value for t in tags or []},
            "time": get_current_time_millis(),
        }
        seq = self.backend.append_experiments([entry])
        # The log decides: a create that another one beat to the name is void.
        if seq in self.backend.experiments_state()["void"]:
            raise MlflowException(
                f"Experiment(name={name}) already exists.", RESOURCE_ALREADY_EXISTS
            )
        return experiment_id_for(seq)

    def get_experiment(self, experiment_id: str) -> Experiment:
        eid, doc = self._experiment_doc(experiment_id)
        return self._experiment_entity(eid, doc)

    def get_experiment_by_name(self, experiment_name: str) -> Experiment | None:
        for fresh in (False, True):
            state = self.backend.experiments_state(fresh)
            eid = state["names"].get(experiment_name)
            if eid is not None:
                return self._experiment_entity(eid, state["exps"][eid])
        return None

    def _set_experiment_stage(self, experiment_id: str, stage: str, view: int) -> None:
        eid, _ = self._experiment_doc(experiment_id, view)
        now = get_current_time_millis()
        self.backend.append_experiments(
            [{"op": "exp.stage", "id": eid, "stage": stage, "time": now}]
        )
        # Like MLflow's SQL store, the experiment's runs follow it.
        with self.backend.experiment_state(eid, fresh=True) as state:
            run_ids = [r for r, doc in state["runs"].items() if entities.run_exists(doc)]
        self._write(
            eid,
            [
                {"op": "run.stage", "id": r, "stage": stage, "time": now, "ts": self._ts()}
                for r in run_ids
            ],
        )

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.DELETED, ViewType.ACTIVE_ONLY)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE, ViewType.DELETED_ONLY)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        compat.validate_experiment_name(new_name)
        eid, doc = self._experiment_doc(experiment_id)
        if doc["stage"] != LifecycleStage.ACTIVE:
            raise MlflowException("Cannot rename a non-active experiment.", INVALID_STATE)
        names = self.backend.experiments_state(fresh=True)["names"]
        if names.get(new_name, eid) != eid:
            raise MlflowException(
                f"Experiment(name={new_name}) already exists.", RESOURCE_ALREADY_EXISTS
            )
        seq = self.backend.append_experiments(
            [{"op": "exp.rename", "id": eid, "name": new_name, "time": get_current_time_millis()}]
        )
        if seq in self.backend.experiments_state()["void"]:
            raise MlflowException(
                f"Experiment(name={new_name}) already exists.", RESOURCE_ALREADY_EXISTS
            )

    def set_experiment_tag(self, experiment_id: str, tag: Any) -> None:
        compat.validate_experiment_tag(tag.key, tag.value)
        eid, doc = self._experiment_doc(experiment_id)
        if doc["stage"] != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The experiment {eid} must be in the 'active' state. "
                f"Current state is {doc['stage']}.",
                INVALID_PARAMETER_VALUE,
            )
        self.backend.append_experiments(
            [
                {
                    "op": "exp.tag",
                    "id": eid,
                    "key": tag.key,
                    "value": tag.value,
                    "time": get_current_time_millis(),
                }
            ]
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        eid, doc = self._experiment_doc(experiment_id)
        if doc["stage"] != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The experiment {eid} must be in the 'active' state. "
                f"Current state is {doc['stage']}.",
                INVALID_PARAMETER_VALUE,
            )
        if key not in doc["tags"]:
            raise MlflowException(
                f"No tag with name: {key} in experiment with id {eid}",
                RESOURCE_DOES_NOT_EXIST,
            )
        self.backend.append_experiments(
            [{"op": "exp.deltag", "id": eid, "key": key, "time": get_current_time_millis()}]
        )

    # -- runs: reading -------------------------------------------------------------

    def _ts(self) -> int:
        return self.backend.now_ms()

    def _write(self, eid: str, entries: list[dict[str, Any]]) -> None:
        if entries:
            self.backend.write_run_entries(eid, entries)

    @contextmanager
    def _run_doc(
        self, run_id: str, wait: float | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(experiment id, run doc) under the experiment view's lock.

        Like MLflow's SQL store, an id of any shape is just looked up (only
        logging calls validate it). ``wait``: how long to wait for news from
        the bucket if due (Backend._refresh).
        """
        eid = self.backend.experiment_of_run(run_id)
        # A run of an experiment that `mlflow gc` removed is gone with it.
        if eid is not None and self._experiment_exists(eid, wait):
            for fresh in (False, True):
                with self.backend.experiment_state(eid, fresh=fresh, wait=wait) as state:
                    doc = state["runs"].get(run_id)
                    if doc is not None and entities.run_exists(doc):
                        yield eid, doc
                        return
        raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)

    def _to_run(self, run_id: str, eid: str, doc: dict[str, Any], location: str) -> Run:
        # The fold stamps a run's doc with the log number of its last change,
        # and an overlay of our own writes counts its own revisions.
        rev = (eid, id(doc), doc.get("seq"), doc.get("lrev"))
        cached = self._run_cache.get(run_id)
        if cached is not None and cached[0] == rev:
            return cached[1]
        run = entities.to_run(run_id, eid, doc, location)
        self._run_cache[run_id] = (rev, run)
        return run

    def get_run(self, run_id: str) -> Run:
        with self._run_doc(run_id) as (eid, doc):
            return entities.to_run(run_id, eid, doc, self._experiment_location(eid))

    def _check_active(self, run_id: str, doc: dict[str, Any]) -> None:
        stage = entities.run_stage(doc)
        if stage != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The run {run_id} must be in the 'active' state. Current state is {stage}.",
                INVALID_PARAMETER_VALUE,
            )

    def _active_run(self, run_id: str) -> tuple[str, dict[str, Any]]:
        # Logging calls check the state they have and let news come in the
        # background: no request inside log_metric (design property 8).
        with self._run_doc(run_id, wait=0) as (eid, doc):
            self._check_active(run_id, doc)
            return eid, doc

    # -- runs: writing -------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: list[RunTag],
        run_name: str | None,
    ) -> Run:
        eid, doc = self._experiment_doc(experiment_id)
        if doc["stage"] != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The experiment {eid} must be in the 'active' state. "
                f"Current state is {doc['stage']}.",
                INVALID_PARAMETER_VALUE,
            )
        tags = list(tags or [])
        name_tag = next((t.value for t in tags if t.key == MLFLOW_RUN_NAME), None)
        if run_name and name_tag and run_name != name_tag:
            raise MlflowException(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
                f"different values (run_name='{run_name}', mlflow.runName='{name_tag}').",
                INVALID_PARAMETER_VALUE,
            )
        run_name = run_name or name_tag or compat.generate_random_name()
        checked = {t.key: t.value for t in (compat.validate_tag(t.key, t.value) for t in tags)}
        checked[MLFLOW_RUN_NAME] = run_name
        run_id = uuid.uuid4().hex
        self.backend.write_index([{"op": "idx.run", "id": run_id, "exp": eid}])
        self._write(
            eid,
            [
                {
                    "op": "run.create",
                    "id": run_id,
                    "user": user_id,
                    "start": start_time,
                    "status": "RUNNING",
                    "tags": checked,
                    "ts": self._ts(),
                }
            ],
        )
        self.backend.publish_soon()
        return self.get_run(run_id)

    def update_run_info(
        self, run_id: str, run_status: Any, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        eid, _ = self._active_run(run_id)
        entry: dict[str, Any] = {"op": "run.update", "id": run_id, "ts": self._ts()}
        if run_status is not None:
            entry["status"] = RunStatus.to_string(run_status)
        if end_time is not None:
            entry["end"] = end_time
        if run_name:
            entry["name"] = run_name
        self._write(eid, [entry])
        return self.get_run(run_id).info

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        with self._run_doc(run_id) as (eid, _):
            pass
        self._write(
            eid,
            [
                {
                    "op": "run.stage",
                    "id": run_id,
                    "stage": stage,
                    "time": get_current_time_millis(),
                    "ts": self._ts(),
                }
            ],
        )

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    def _check_params(self, run_id: str, doc: dict[str, Any], params: list[Param]) -> None:
        existing = doc["params"]
        mismatched = [
            {"key": p.key, "old_value": existing[p.key], "new_value": p.value}
            for p in params
            if p.key in existing and existing[p.key] != p.value
        ]
        if mismatched:
            raise MlflowException(
                "Changing param values is not allowed. Params were already"
                f" logged='{mismatched}' for run ID='{run_id}'.",
                INVALID_PARAMETER_VALUE,
            )

    # The one-item calls do not check the run id's shape (the SQL store's do
    # not: a malformed id is just not found); log_batch does.

    def log_metric(self, run_id: str, metric: Metric) -> None:
        compat.validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        self._log_batch(run_id, [metric], [], [])

    def log_param(self, run_id: str, param: Param) -> None:
        self._log_batch(run_id, [], [param], [])

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        tag = compat.validate_tag(tag.key, tag.value)
        self._log_batch(run_id, [], [], [tag])

    def log_batch(
        self, run_id: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]
    ) -> None:
        compat.validate_run_id(run_id)
        self._log_batch(run_id, metrics, params, tags)

    def _log_batch(
        self, run_id: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]
    ) -> None:
        metrics, params, tags = compat.validate_batch_log_data(metrics, params, tags)
        _validate_int64(metrics)
        compat.validate_batch_log_limits(metrics, params, tags)
        compat.validate_param_keys_unique(params)
        eid, doc = self._active_run(run_id)
        self._check_params(run_id, doc, params)
        # MLflow's SQL store sets mlflow.runName through update_run_info, which
        # ignores an empty name: so an empty name tag changes nothing.
        tags = [t for t in tags if t.key != MLFLOW_RUN_NAME or t.value]
        if not (metrics or params or tags):
            return
        seen: set[tuple[Any, ...]] = set()
        points = []
        model_points: dict[tuple[Any, ...], tuple[Metric, list[Any]]] = {}
        for m in metrics:
            point = metric_point(m.key, m.value, m.timestamp, m.step)
            if tuple(point) not in seen:
                seen.add(tuple(point))
                points.append(point)
            if m.model_id:
                ident = (m.model_id, m.dataset_name, m.dataset_digest, *point)
                model_points.setdefault(ident, (m, point))
        entry: dict[str, Any] = {"op": "run.log", "id": run_id, "ts": self._ts()}
        if params:
            entry["params"] = {p.key: p.value for p in params}
        if points:
            entry["metrics"] = points
        if tags:
            entry["tags"] = {t.key: t.value for t in tags}
        self._write(eid, [entry])
        # A logged model's metrics go to the log of the model's own experiment,
        # which need not be the run's.
        by_experiment: dict[str, list[dict[str, Any]]] = {}
        for m, point in model_points.values():
            model_eid = self.backend.experiment_of_model(str(m.model_id))
            if model_eid is None:
                continue  # no such model: the SQL store's rows would be orphans, never read
            by_experiment.setdefault(model_eid, []).append(
                {
                    "op": "model.metrics",
                    "id": m.model_id,
                    "ts": entry["ts"],
                    "metrics": [
                        {
                            "point": point,
                            "run_id": run_id,
                            "dataset_name": m.dataset_name,
                            "dataset_digest": m.dataset_digest,
                        }
                    ],
                }
            )
        for model_eid, model_entries in by_experiment.items():
            self._write(model_eid, model_entries)

    def delete_tag(self, run_id: str, key: str) -> None:
        eid, doc = self._active_run(run_id)
        if register_value(doc["tags"].get(key)) is None:
            raise MlflowException(
                f"No tag with name: {key} in run with id {run_id}", RESOURCE_DOES_NOT_EXIST
            )
        self._write(eid, [{"op": "run.deltag", "id": run_id, "key": key, "ts": self._ts()}])

    def log_inputs(
        self,
        run_id: str,
        datasets: list[DatasetInput] | None = None,
        models: list[LoggedModelInput] | None = None,
    ) -> None:
        compat.validate_run_id(run_id)
        if datasets is not None:
            if not isinstance(datasets, list):
                raise TypeError(f"Argument 'datasets' should be a list, got '{type(datasets)}'")
            compat.validate_dataset_inputs(datasets)
        eid, _ = self._active_run(run_id)
        if datasets is None and models is None:
            return
        items = []
        for ds_input in datasets or []:
            ds = ds_input.dataset
            items.append(
                {
                    "dataset": {
                        "name": ds.name,
                        "digest": ds.digest,
                        "source_type": ds.source_type,
                        "source": ds.source,
                        "schema": ds.schema,
                        "profile": ds.profile,
                    },
                    "tags": [{"key": t.key, "value": t.value} for t in ds_input.tags],
                }
            )
        entry = {
            "op": "run.inputs",
            "id": run_id,
            "datasets": items,
            "models": [m.model_id for m in models or []],
            "ts": self._ts(),
        }
        self._write(eid, [entry])

    def log_outputs(self, run_id: str, models: list[LoggedModelOutput]) -> None:
        eid, _ = self._active_run(run_id)
        if models is None:
            return
        outputs = [{"model_id": m.model_id, "step": m.step} for m in models]
        self._write(eid, [{"op": "run.outputs", "id": run_id, "models": outputs, "ts": self._ts()}])

    def record_logged_model(self, run_id: str, mlflow_model: Any) -> None:
        """Append a model's metadata to the run's mlflow.log-model.history tag.

        As MLflow's SQL store does: read the tag, append, write it back.
        """
        from mlflow.models import Model

        if not isinstance(mlflow_model, Model):
            raise TypeError(
                f"Argument 'mlflow_model' should be mlflow.models.Model, got '{type(mlflow_model)}'"
            )
        model_dict = mlflow_model.get_tags_dict()
        _, doc = self._active_run(run_id)
        previous = register_value(doc["tags"].get(MLFLOW_LOGGED_MODELS))
        history = json.loads(previous) if previous else []
        value = json.dumps([*history, model_dict])
        compat.validate_tag(MLFLOW_LOGGED_MODELS, value)
        self.log_batch(run_id, [], [], [RunTag(MLFLOW_LOGGED_MODELS, value)])

    # -- runs: searching -------------------------------------------------------------

    def _runs_of(self, eid: str, stages: list[str]) -> list[Run]:
        try:
            location = self._experiment_location(eid)
        except MlflowException:
            return []
        with self.backend.experiment_state(eid) as state:
            return [
                self._to_run(run_id, eid, doc, location)
                for run_id, doc in state["runs"].items()
                if entities.run_exists(doc) and entities.run_stage(doc) in stages
            ]

    def _search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        run_view_type: int,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> tuple[list[Run], str | None]:
        # None is "no limit" in the SQL store (the client always sends one); 0 is
        # refused as there (a page of none with a token at offset 0 looped clients).
        _validate_max_results(max_results, allow_null=True)
        stages = _stages(run_view_type)
        eids = [_parse_experiment_id(e) for e in experiment_ids]
        self.backend.warm_up(eids)
        runs: list[Run] = []
        for eid in eids:
            runs.extend(self._runs_of(eid, stages))
        return search.search_runs(runs, filter_string, order_by, max_results, page_token)

    def _history(self, eid: str, doc: dict[str, Any]) -> dict[str, list[Any]]:
        from .backend import merge_history

        base = {}
        if doc.get("href"):
            # A damaged history object: its points are left out, with a warning.
            base = self.backend.read_history(eid, doc["href"])
        return merge_history(base, doc["hist"])

    def _prefetch_histories(self, run_ids: Sequence[str]) -> None:
        """Fetch the stored histories of several runs at once, before reading them one by one."""
        refs: dict[str, list[str]] = {}
        for run_id in dict.fromkeys(run_ids):
            try:
                with self._run_doc(run_id) as (eid, doc):
                    if doc.get("href"):
                        refs.setdefault(eid, []).append(doc["href"])
            except MlflowException:
                continue  # reported (or not) by the read itself
        for eid, wanted in refs.items():
            self.backend.prefetch_histories(eid, wanted)

    def _points(self, run_id: str, metric_key: str) -> list[list[Any]]:
        """A run's points of one metric; none for an unknown run, as in MLflow's SQL store."""
        try:
            with self._run_doc(run_id) as (eid, doc):
                return list(self._history(eid, doc).get(metric_key, []))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise

    def get_metric_history(
        self,
        run_id: str,
        metric_key: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> PagedList[Metric]:
        # MLflow's SQL store orders a history by (timestamp, step, value).
        points = sorted(self._points(run_id, metric_key), key=_by_time)
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        end = None if max_results is None else offset + max_results
        page = [entities.metric_entity(metric_key, p) for p in points[offset:end]]
        token = None
        if end is not None and end < len(points):
            token = SearchUtils.create_page_token(end)
        return PagedList(page, token)

    def get_metric_history_bulk(
        self, run_ids: list[str], metric_key: str, max_results: int
    ) -> list[MetricWithRunId]:
        """Histories of several runs, by run id then time (the server's bulk endpoint)."""
        self._prefetch_histories(run_ids)
        out = []
        for run_id in sorted(set(run_ids)):
            for p in sorted(self._points(run_id, metric_key), key=_by_time):
                out.append(MetricWithRunId(entities.metric_entity(metric_key, p), run_id))
        return out[:max_results]

    def get_metric_history_bulk_interval_from_steps(
        self, run_id: str, metric_key: str, steps: list[int], max_results: int
    ) -> list[MetricWithRunId]:
        wanted = set(steps)
        points = sorted(
            (p for p in self._points(run_id, metric_key) if p[3] in wanted), key=_by_step
        )
        return [
            MetricWithRunId(entities.metric_entity(metric_key, p), run_id)
            for p in points[:max_results]
        ]

    def get_metric_history_bulk_interval(
        self,
        run_ids: list[str],
        metric_key: str,
        max_results: int,
        start_step: int | None,
        end_step: int | None,
    ) -> list[MetricWithRunId]:
        """Up to ``max_results`` points per run, sampled as MLflow's SQL store samples them.

        The points in (step, timestamp, value) order are cut into ``max_results``
        near-equal buckets (SQL's NTILE: the first ``n % k`` one longer), the
        first point of each is kept, and the last point replaces the final
        sample if it is not already in.
        """
        if (start_step is None) != (end_step is None):
            raise MlflowException.invalid_parameter_value(
                "Both start_step and end_step must be specified together, "
                "or neither may be specified."
            )
        k = max(1, max_results)
        self._prefetch_histories(run_ids)
        out: list[MetricWithRunId] = []
        for run_id in run_ids:
            points = sorted(self._points(run_id, metric_key), key=_by_step)
            if start_step is not None and end_step is not None:
                points = [p for p in points if start_step <= p[3] <= end_step]
            n = len(points)
            if not n:
                continue
            q, r = divmod(n, k)
            sample = [points[b * q + min(b, r)] for b in range(min(k, n))]
            if _by_step(sample[-1]) != _by_step(points[-1]):
                if len(sample) >= k:
                    sample[-1] = points[-1]
                else:
                    sample.append(points[-1])
            out.extend(
                MetricWithRunId(entities.metric_entity(metric_key, p), run_id) for p in sample
            )
        return out

    def _search_datasets(self, experiment_ids: list[str]) -> list[Any]:

        seen: set[tuple[str, str, str, str | None]] = set()
        out = []
        for experiment_id in experiment_ids:
            eid = _parse_experiment_id(experiment_id)
            with self.backend.experiment_state(eid) as state:
                for doc in state["runs"].values():
                    for item in doc["inputs"]:
                        if "dataset" not in item:
                            continue
                        context = next(
                            (
                                t["value"]
                                for t in item["tags"]
                                if t["key"] == MLFLOW_DATASET_CONTEXT
                            ),
                            None,
                        )
                        ident = (eid, item["dataset"]["name"], item["dataset"]["digest"], context)
                        if ident not in seen:
                            seen.add(ident)
                            out.append(compat.DatasetSummary(*ident))
        return out[:1000]

    # -- permanent deletion (mlflow gc) ------------------------------------------------

    def _get_deleted_runs(self, older_than: int = 0) -> list[str]:
        now = get_current_time_millis()
        out = []
        for eid in self._experiments(fresh=True):
            with self.backend.experiment_state(eid, fresh=True) as state:
                for run_id, doc in state["runs"].items():
                    if not entities.run_exists(doc):
                        continue
                    if entities.run_stage(doc) == LifecycleStage.DELETED:
                        deleted = doc.get("dtime") or 0
                        if now - deleted >= older_than:
                            out.append(run_id)
        return out

    def _purge(self, eid: str, entry: dict[str, Any]) -> None:
        """Write a purge and wait until it is folded in: an overlay cannot show an absence."""
        self._write(eid, [entry])
        self.backend.flush()
        with self.backend.experiment_state(eid, fresh=True):
            pass

    def _hard_delete_run(self, run_id: str) -> None:
        with self._run_doc(run_id) as (eid, _):
            pass
        # As in MLflow's SQL store (a cascading foreign key), the metrics the run
        # logged to logged models go with it, in whichever experiment they are.
        for model_eid in self._experiments(fresh=True):
            with self.backend.experiment_state(model_eid, fresh=True) as state:
                models = [
                    model_id
                    for model_id, doc in state["models"].items()
                    if any(m.get("run_id") == run_id for m in doc.get("metrics", []))
                ]
            self._write(
                model_eid,
                [{"op": "model.droprun", "id": m, "run": run_id, "ts": self._ts()} for m in models],
            )
        self._purge(eid, {"op": "run.purge", "id": run_id, "ts": self._ts()})

    def _get_deleted_logged_models(self, older_than: int = 0) -> list[str]:
        now = get_current_time_millis()
        out = []
        for eid in self._experiments(fresh=True):
            with self.backend.experiment_state(eid, fresh=True) as state:
                for model_id, doc in state["models"].items():
                    if "name" not in doc:
                        continue
                    # MLflow's SQL store ages a deleted model by its last update.
                    updated = doc.get("mtime") or doc.get("time") or 0
                    deleted = register_value(doc.get("stage")) == LifecycleStage.DELETED
                    if deleted and updated <= now - older_than:
                        out.append(model_id)
        return out

    def _hard_delete_logged_model(self, model_id: str) -> None:
        with self._model_doc(model_id) as (eid, _):
            pass
        self._purge(eid, {"op": "model.purge", "id": model_id, "ts": self._ts()})

    def _hard_delete_experiment(self, experiment_id: str) -> None:
        eid, _ = self._experiment_doc(experiment_id, ViewType.DELETED_ONLY)
        self.backend.append_experiments(
            [{"op": "exp.purge", "id": eid, "time": get_current_time_millis()}]
        )

    # -- logged models (MLflow 3) ------------------------------------------------------

    def create_logged_model(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: list[LoggedModelTag] | None = None,
        params: list[LoggedModelParameter] | None = None,
        model_type: str | None = None,
    ) -> LoggedModel:
        compat.validate_logged_model_name(name)
        eid, doc = self._experiment_doc(experiment_id)
        if doc["stage"] != LifecycleStage.ACTIVE:
            raise MlflowException(
                f"The experiment {eid} must be in the 'active' state. "
                f"Current state is {doc['stage']}.",
                INVALID_PARAMETER_VALUE,
            )
        # MLflow's SQL store checks neither params' nor tags' keys of a logged model
        # here, only that each has a value.
        model_params = _model_strings("param", params or [])
        model_tags = _model_strings("tag", tags or [])
        model_id = f"m-{uuid.uuid4().hex}"
        now = get_current_time_millis()
        self.backend.write_index([{"op": "idx.model", "id": model_id, "exp": eid}])
        self._write(
            eid,
            [
                {
                    "op": "model.create",
                    "id": model_id,
                    "name": name or compat.generate_random_name(),
                    "run": source_run_id,
                    "type": model_type,
                    "time": now,
                    "params": model_params,
                    "tags": model_tags,
                    "ts": self._ts(),
                }
            ],
        )
        return self.get_logged_model(model_id)

    @contextmanager
    def _model_doc(self, model_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        eid = self.backend.experiment_of_model(model_id)
        if eid is not None and self._experiment_exists(eid):
            for fresh in (False, True):
                with self.backend.experiment_state(eid, fresh=fresh) as state:
                    doc = state["models"].get(model_id)
                    if doc is not None and "name" in doc:
                        yield eid, doc
                        return
        raise MlflowException(
            f"Logged model with ID '{model_id}' not found.", RESOURCE_DOES_NOT_EXIST
        )

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        with self._model_doc(model_id) as (eid, doc):
            if register_value(doc.get("stage")) == LifecycleStage.DELETED and not allow_deleted:
                raise MlflowException(
                    f"Logged model with ID '{model_id}' not found.", RESOURCE_DOES_NOT_EXIST
                )
            return entities.to_logged_model(model_id, eid, doc, self._experiment_location(eid))

    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        with self._model_doc(model_id) as (eid, _):
            pass
        self._write(
            eid,
            [
                {
                    "op": "model.finalize",
                    "id": model_id,
                    "status": LoggedModelStatus(status).name,
                    "time": get_current_time_millis(),
                    "ts": self._ts(),
                }
            ],
        )
        # A deleted model can still be finalized, as in MLflow's SQL store.
        return self.get_logged_model(model_id, allow_deleted=True)

    def log_logged_model_params(self, model_id: str, params: list[LoggedModelParameter]) -> None:
        """Add params to a logged model; like MLflow's SQL store, a key it has is refused."""
        new = _model_strings("param", params)
        with self._model_doc(model_id) as (eid, doc):
            taken = [p.key for p in params if p.key in doc["params"]]
        keys = [p.key for p in params]
        taken += sorted({k for k in keys if keys.count(k) > 1})
        if taken:
            raise MlflowException(
                f"Logged model {model_id} already has params {sorted(set(taken))}: "
                "a logged model's params are set once",
                BAD_REQUEST,
            )
        if new:
            # Params leave last_updated_timestamp, as in MLflow's SQL store: no "time".
            self._write(
                eid, [{"op": "model.params", "id": model_id, "params": new, "ts": self._ts()}]
            )

    def set_logged_model_tags(self, model_id: str, tags: list[LoggedModelTag]) -> None:
        checked = _model_strings("tag", tags)
        with self._model_doc(model_id) as (eid, _):
            pass
        self._write(
            eid,
            [
                {
                    # No "time": in MLflow's SQL store tags leave last_updated_timestamp.
                    "op": "model.tag",
                    "id": model_id,
                    "tags": checked,
                    "ts": self._ts(),
                }
            ],
        )

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        with self._model_doc(model_id) as (eid, doc):
            if register_value(doc["tags"].get(key)) is None:
                raise MlflowException(
                    f"No tag with key {key!r} found for model with ID {model_id!r}.",
                    RESOURCE_DOES_NOT_EXIST,
                )
        self._write(eid, [{"op": "model.deltag", "id": model_id, "key": key, "ts": self._ts()}])

    def delete_logged_model(self, model_id: str) -> None:
        with self._model_doc(model_id) as (eid, _):
            pass
        self._write(
            eid,
            [
                {
                    "op": "model.stage",
                    "id": model_id,
                    "stage": LifecycleStage.DELETED,
                    "time": get_current_time_millis(),
                    "ts": self._ts(),
                }
            ],
        )

    def search_logged_models(
        self,
        experiment_ids: list[str],
        filter_string: str | None = None,
        datasets: list[dict[str, Any]] | None = None,
        max_results: int | None = None,
        order_by: list[dict[str, Any]] | None = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        if datasets and not all(d.get("dataset_name") for d in datasets):
            raise MlflowException(
                "`dataset_name` in the `datasets` clause must be specified.",
                INVALID_PARAMETER_VALUE,
            )
        models: list[LoggedModel] = []
        for experiment_id in experiment_ids:
            eid = _parse_experiment_id(experiment_id)
            try:
                location = self._experiment_location(eid)
            except MlflowException:
                continue
            with self.backend.experiment_state(eid) as state:
                for model_id, doc in state["models"].items():
                    if "name" not in doc:
                        continue
                    if register_value(doc.get("stage")) == LifecycleStage.DELETED:
                        continue
                    models.append(entities.to_logged_model(model_id, eid, doc, location))
        page, token = search.search_logged_models(
            models, experiment_ids, filter_string, datasets, max_results, order_by, page_token
        )
        return PagedList(page, token)

    # Traces, GenAI evaluation and the AI gateway are not stored in the bucket:
    # unsupported_calls.py answers those calls (empty, or NOT_IMPLEMENTED).

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is in the bucket."""
        return self.backend.flush(timeout)
