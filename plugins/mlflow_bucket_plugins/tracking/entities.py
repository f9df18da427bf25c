"""Folded state -> MLflow entities.

Kept apart from the fold so that the fold stays plain data (it is what
checkpoints store) and MLflow's classes are built only when asked for.
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunTag,
)
from mlflow.entities.logged_model import LoggedModel
from mlflow.entities.logged_model_input import LoggedModelInput
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.entities.logged_model_parameter import LoggedModelParameter
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.entities.logged_model_tag import LoggedModelTag
from mlflow.entities.run_outputs import RunOutputs
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from .fold import live_tags, register_value


def experiment_artifact_location(doc: dict[str, Any], eid: str, default_root: str) -> str:
    """The location the experiment was created with: given, or its creator's root + id.

    ``default_root`` (the store's own ``<uri>/artifacts``) serves only where the
    entry names neither: a reader's settings never move existing artifacts.
    """
    return str(doc.get("loc") or f"{doc.get('root') or default_root}/{eid}")


def to_experiment(eid: str, doc: dict[str, Any], artifact_root: str) -> Experiment:
    return Experiment(
        experiment_id=eid,
        name=doc["name"],
        artifact_location=experiment_artifact_location(doc, eid, artifact_root),
        lifecycle_stage=doc["stage"],
        tags=[ExperimentTag(k, v) for k, v in doc["tags"].items()],
        creation_time=doc.get("ctime"),
        last_update_time=doc.get("mtime"),
    )


def run_exists(doc: dict[str, Any]) -> bool:
    """A run whose create has been folded (entries may precede it)."""
    return "user" in doc


def run_stage(doc: dict[str, Any]) -> str:
    return str(register_value(doc.get("stage"), LifecycleStage.ACTIVE))


def metric_entity(key: str, point: list[Any], run_id: str | None = None) -> Metric:
    value, is_nan, timestamp, step = point
    metric = Metric(key, float("nan") if is_nan else value, timestamp, step)
    if run_id is not None:
        metric._run_id = run_id  # get_metric_history_bulk_interval returns it
    return metric


def to_run(run_id: str, eid: str, doc: dict[str, Any], experiment_location: str) -> Run:
    tags = live_tags(doc["tags"])
    info = RunInfo(
        run_id=run_id,
        experiment_id=eid,
        user_id=doc.get("user") or "",
        status=register_value(doc.get("status"), "RUNNING"),
        start_time=doc.get("start"),  # type: ignore[arg-type]  # None when not given
        end_time=register_value(doc.get("end")),
        lifecycle_stage=run_stage(doc),
        artifact_uri=f"{experiment_location}/{run_id}/artifacts",
        run_name=register_value(doc["name"]) if "name" in doc else tags.get(MLFLOW_RUN_NAME),
    )
    data = RunData(
        metrics=[metric_entity(k, p) for k, p in doc["latest"].items()],
        params=[Param(k, v) for k, v in doc["params"].items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    dataset_inputs = []
    model_inputs = []
    for item in doc["inputs"]:
        if "model_input" in item:
            model_inputs.append(LoggedModelInput(item["model_input"]))
            continue
        ds = item["dataset"]
        dataset_inputs.append(
            DatasetInput(
                Dataset(
                    ds["name"],
                    ds["digest"],
                    ds["source_type"],
                    ds["source"],
                    ds.get("schema"),
                    ds.get("profile"),
                ),
                [InputTag(t["key"], t["value"]) for t in item.get("tags", [])],
            )
        )
    outputs = RunOutputs([LoggedModelOutput(o["model_id"], o["step"]) for o in doc["outputs"]])
    return Run(info, data, RunInputs(dataset_inputs, model_inputs), outputs)


def model_artifact_location(experiment_location: str, model_id: str) -> str:
    return f"{experiment_location}/models/{model_id}/artifacts"


def to_logged_model(
    model_id: str, eid: str, doc: dict[str, Any], experiment_location: str
) -> LoggedModel:
    status = register_value(doc.get("status"), "PENDING")
    metrics = []
    for item in doc["metrics"]:
        key, value, is_nan, timestamp, step = item["point"]
        metric = Metric(
            key,
            float("nan") if is_nan else value,
            timestamp,
            step,
            model_id=model_id,
            dataset_name=item.get("dataset_name"),
            dataset_digest=item.get("dataset_digest"),
            run_id=item.get("run_id"),
        )
        metrics.append(metric)
    return LoggedModel(
        experiment_id=eid,
        model_id=model_id,
        name=doc["name"],
        artifact_location=model_artifact_location(experiment_location, model_id),
        creation_timestamp=doc.get("time") or 0,
        last_updated_timestamp=doc.get("mtime") or doc.get("time") or 0,
        model_type=doc.get("type"),
        source_run_id=doc.get("run"),
        status=LoggedModelStatus(status),
        tags=[LoggedModelTag(k, v) for k, v in live_tags(doc["tags"]).items()],
        params=[LoggedModelParameter(k, v) for k, v in doc["params"].items()],
        # MLflow's SQL store gives None, not [], for a model without metrics.
        metrics=metrics or None,
    )
