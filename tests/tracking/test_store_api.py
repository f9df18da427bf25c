"""The tracking store through MLflow's own client, fluent API, server and CLI.

Most tests run on memory:// (fast); a subset runs on the GCS and S3
emulators through the entry points, as `mlflow.set_tracking_uri("gs://...")`
would in a user's script. What "right" means is MLflow's SQL store's
behaviour (tests/tracking/test_differential.py compares the two at length);
these tests pin the user-visible cases down by name.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.entities.logged_model_tag import LoggedModelTag
from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins.mlflow_compat import reset_server_stores
from mlflow_bucket_plugins.tracking.backend import forget_backends
from mlflow_bucket_plugins.tracking.store import BucketTrackingStore
from store_helpers import reopen


def _code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


@pytest.fixture
def tracking(memory_uri: str) -> Iterator[str]:
    """A fresh memory:// store as the process's tracking URI."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(memory_uri)
    yield memory_uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def client(tracking: str) -> MlflowClient:
    return MlflowClient(tracking)


@pytest.fixture
def store(tracking: str) -> BucketTrackingStore:
    return BucketTrackingStore(tracking)


# -- experiments ----------------------------------------------------------------------


def test_fresh_store_has_default_experiment(client: MlflowClient, tracking: str) -> None:
    (default,) = client.search_experiments()
    assert (default.experiment_id, default.name) == ("0", "Default")
    assert default.lifecycle_stage == LifecycleStage.ACTIVE
    assert default.artifact_location == f"{tracking}/artifacts/0"
    # Dated like the SQL store's: when the store was made.
    assert default.creation_time and default.last_update_time
    assert client.get_experiment_by_name("Default").experiment_id == "0"


def test_experiment_create_get_rename_tags(client: MlflowClient, tracking: str) -> None:
    eid = client.create_experiment("alpha", tags={"team": "a"})
    exp = client.get_experiment(eid)
    assert exp.name == "alpha" and exp.tags == {"team": "a"}
    assert exp.artifact_location == f"{tracking}/artifacts/{eid}"
    custom = client.create_experiment("beta", artifact_location="s3://elsewhere/beta")
    assert client.get_experiment(custom).artifact_location == "s3://elsewhere/beta"

    with pytest.raises(MlflowException) as exc:
        client.create_experiment("alpha")
    assert _code(exc) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as exc:
        client.create_experiment("")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"

    client.rename_experiment(eid, "gamma")
    assert client.get_experiment_by_name("gamma").experiment_id == eid
    assert client.get_experiment_by_name("alpha") is None
    with pytest.raises(MlflowException) as exc:
        client.rename_experiment(eid, "beta")
    # docs/tracking.md: the SQL store says BAD_REQUEST here (its IntegrityError).
    assert _code(exc) == "RESOURCE_ALREADY_EXISTS"
    # The old name is free again.
    assert client.create_experiment("alpha") != eid

    client.set_experiment_tag(eid, "team", "b")
    client.set_experiment_tag(eid, "note", "x")
    client.delete_experiment_tag(eid, "note")
    assert client.get_experiment(eid).tags == {"team": "b"}
    with pytest.raises(MlflowException) as exc:
        client.delete_experiment_tag(eid, "note")
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"

    for bad in ("12345", "abc"):
        with pytest.raises(MlflowException) as exc:
            client.get_experiment(bad)
        assert _code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def test_delete_and_restore_experiment_take_its_runs_along(client: MlflowClient) -> None:
    eid = client.create_experiment("doomed")
    runs = [client.create_run(eid).info.run_id for _ in range(3)]
    client.delete_experiment(eid)
    assert client.get_experiment(eid).lifecycle_stage == LifecycleStage.DELETED
    assert {client.get_run(r).info.lifecycle_stage for r in runs} == {LifecycleStage.DELETED}
    assert eid not in [e.experiment_id for e in client.search_experiments()]
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [eid]
    with pytest.raises(MlflowException) as exc:
        client.create_run(eid)
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as exc:
        client.rename_experiment(eid, "renamed")
    assert _code(exc) == "INVALID_STATE"

    client.restore_experiment(eid)
    assert {client.get_run(r).info.lifecycle_stage for r in runs} == {LifecycleStage.ACTIVE}


def test_search_experiments(client: MlflowClient) -> None:
    ids = [client.create_experiment(f"exp-{i}", tags={"k": str(i % 2)}) for i in range(12)]
    client.delete_experiment(ids[0])

    found = client.search_experiments(filter_string="tags.k = '1'")
    assert {e.name for e in found} == {f"exp-{i}" for i in range(1, 12, 2)}
    found = client.search_experiments(filter_string="name LIKE 'exp-1%'", order_by=["name DESC"])
    assert [e.name for e in found] == ["exp-11", "exp-10", "exp-1"]
    # Newest first by default, ties (same millisecond) by id: as integers, "10" after "9".
    default_order = client.search_experiments()
    names = [e.name for e in default_order]
    assert [(e.creation_time, int(e.experiment_id)) for e in default_order] == sorted(
        ((e.creation_time, int(e.experiment_id)) for e in default_order),
        key=lambda t: (-t[0], t[1]),
    )
    assert names[-1] == "Default"
    by_id = client.search_experiments(order_by=["experiment_id DESC"], max_results=3)
    assert [e.experiment_id for e in by_id] == sorted(ids[1:], key=int, reverse=True)[:3]
    assert len(client.search_experiments(view_type=ViewType.ALL)) == 13

    pages, token = [], None
    while True:
        page = client.search_experiments(max_results=5, page_token=token)
        pages.append([e.name for e in page])
        token = page.token
        if not token:
            break
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [name for page in pages for name in page] == names

    with pytest.raises(MlflowException) as exc:
        client.search_experiments(filter_string="experiment_id LIKE '1%'")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as exc:
        client.search_experiments(order_by=["tags.k"])
    assert _code(exc) == "INVALID_PARAMETER_VALUE"


# -- runs -----------------------------------------------------------------------------


def test_run_names_and_system_tags(client: MlflowClient, tracking: str) -> None:
    mlflow.set_experiment("fluent")
    with mlflow.start_run(run_name="named") as run:
        pass
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "named" and got.data.tags["mlflow.runName"] == "named"
    assert got.info.status == "FINISHED" and got.info.end_time
    for tag in ("mlflow.user", "mlflow.source.name", "mlflow.source.type"):
        assert tag in got.data.tags
    eid = got.info.experiment_id
    assert got.info.artifact_uri == f"{tracking}/artifacts/{eid}/{run.info.run_id}/artifacts"

    generated = client.create_run(eid)
    assert generated.info.run_name
    assert generated.data.tags["mlflow.runName"] == generated.info.run_name
    with pytest.raises(MlflowException) as exc:
        client.create_run(eid, tags={"mlflow.runName": "a"}, run_name="b")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"

    run_id = generated.info.run_id
    client.update_run(run_id, status="KILLED", name="renamed")
    info = client.get_run(run_id).info
    assert (info.status, info.run_name) == ("KILLED", "renamed")
    client.set_terminated(run_id, "FAILED", end_time=123)
    info = client.get_run(run_id).info
    assert (info.status, info.end_time) == ("FAILED", 123)
    # As in the SQL store, the name is kept apart from its tag.
    client.delete_tag(run_id, "mlflow.runName")
    assert client.get_run(run_id).info.run_name == "renamed"


def test_delete_restore_run_and_deleted_run_refuses_writes(client: MlflowClient) -> None:
    run_id = client.create_run("0").info.run_id
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == LifecycleStage.DELETED
    with pytest.raises(MlflowException) as exc:
        client.log_param(run_id, "a", "1")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    assert run_id not in [r.info.run_id for r in client.search_runs(["0"])]
    deleted = client.search_runs(["0"], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_id]
    client.restore_run(run_id)
    client.log_param(run_id, "a", "1")

    with pytest.raises(MlflowException) as exc:
        client.get_run("0123456789abcdef0123456789abcdef")
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_params_are_set_once(client: MlflowClient) -> None:
    run_id = client.create_run("0").info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException, match="Changing param values is not allowed") as exc:
        client.log_param(run_id, "lr", "0.2")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as exc:
        client.log_batch(run_id, params=[Param("lr", "0.3"), Param("new", "1")])
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    # The batch failed as a whole: nothing of it landed.
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    with pytest.raises(MlflowException) as exc:
        client.log_param(run_id, "k" * 251, "1")
    assert _code(exc) == "INVALID_PARAMETER_VALUE"


def test_metrics_nan_inf_steps_and_history(client: MlflowClient) -> None:
    run_id = client.create_run("0").info.run_id
    client.log_metric(run_id, "loss", 3.0, timestamp=30, step=0)
    client.log_metric(run_id, "loss", 2.0, timestamp=20, step=1)
    client.log_metric(run_id, "loss", float("nan"), timestamp=10, step=2)
    client.log_metric(run_id, "big", float("inf"), timestamp=1, step=0)
    client.log_metric(run_id, "small", float("-inf"), timestamp=1, step=0)
    metrics = client.get_run(run_id).data.metrics
    # The latest is the greatest step; infinities are stored as the largest floats.
    assert math.isnan(metrics["loss"])
    assert metrics["big"] == 1.7976931348623157e308
    assert metrics["small"] == -1.7976931348623157e308
    history = client.get_metric_history(run_id, "loss")
    # In the SQL store's order: by timestamp, then step, then value.
    assert [(m.timestamp, m.step) for m in history] == [(10, 2), (20, 1), (30, 0)]
    assert math.isnan(history[0].value)
    assert client.get_metric_history(run_id, "nope") == []
    with pytest.raises(MlflowException) as exc:
        client.log_metric(run_id, "loss", 1.0, timestamp=-1)
    assert _code(exc) == "INVALID_PARAMETER_VALUE"


def test_many_metric_points(client: MlflowClient, store: BucketTrackingStore) -> None:
    run_id = client.create_run("0").info.run_id
    points = [Metric("acc", i / 5000, 1000 + i, i) for i in range(5000)]
    client.log_batch(run_id, metrics=points)  # the client sends 1000 per call
    history = client.get_metric_history(run_id, "acc")
    assert len(history) == 5000 and history[-1].step == 4999
    assert client.get_run(run_id).data.metrics["acc"] == 4999 / 5000
    page = store.get_metric_history(run_id, "acc", max_results=100)
    assert len(page) == 100 and page.token


def test_get_metric_history_bulk_interval(client: MlflowClient, store: BucketTrackingStore) -> None:
    run_a = client.create_run("0").info.run_id
    run_b = client.create_run("0").info.run_id
    client.log_batch(run_a, metrics=[Metric("m", float(i), i, i) for i in range(100)])
    client.log_batch(run_b, metrics=[Metric("m", float(i), i, i) for i in range(0, 10, 3)])
    sampled = store.get_metric_history_bulk_interval([run_a, run_b], "m", 10, None, None)
    steps_a = [m.step for m in sampled if m.run_id == run_a]
    # SQL's NTILE(10) over 100 points: every tenth, and the last point kept.
    assert steps_a == [0, 10, 20, 30, 40, 50, 60, 70, 80, 99]
    assert [m.step for m in sampled if m.run_id == run_b] == [0, 3, 6, 9]
    window = store.get_metric_history_bulk_interval([run_a], "m", 3, 5, 9)
    assert [m.step for m in window] == [5, 7, 9]
    with pytest.raises(MlflowException):
        store.get_metric_history_bulk_interval([run_a], "m", 3, 5, None)
    from_steps = store.get_metric_history_bulk_interval_from_steps(run_a, "m", [3, 1], 5)
    assert [(m.run_id, m.step) for m in from_steps] == [(run_a, 1), (run_a, 3)]


def test_log_batch_limits(store: BucketTrackingStore, client: MlflowClient) -> None:
    run_id = client.create_run("0").info.run_id
    store.log_batch(run_id, [Metric(f"m{i}", 1.0, 1, 0) for i in range(1000)], [], [])
    store.log_batch(
        run_id,
        [],
        [Param(f"p{i}", "1") for i in range(100)],
        [RunTag(f"t{i}", "1") for i in range(100)],
    )
    too_many = {
        "metrics": ([Metric(f"x{i}", 1.0, 1, 0) for i in range(1001)], [], []),
        "params": ([], [Param(f"q{i}", "1") for i in range(101)], []),
        "tags": ([], [], [RunTag(f"u{i}", "1") for i in range(101)]),
    }
    for name, (m, p, t) in too_many.items():
        with pytest.raises(MlflowException, match=name) as exc:
            store.log_batch(run_id, m, p, t)
        assert _code(exc) == "INVALID_PARAMETER_VALUE"
    data = client.get_run(run_id).data
    assert len(data.metrics) == 1000 and len(data.params) == 100
    assert sum(k.startswith("t") for k in data.tags) == 100


def test_tags_set_and_delete(client: MlflowClient) -> None:
    run_id = client.create_run("0").info.run_id
    client.set_tag(run_id, "stage", "dev")
    client.set_tag(run_id, "stage", "prod")
    assert client.get_run(run_id).data.tags["stage"] == "prod"
    client.delete_tag(run_id, "stage")
    assert "stage" not in client.get_run(run_id).data.tags
    with pytest.raises(MlflowException) as exc:
        client.delete_tag(run_id, "stage")
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_log_inputs_and_search_datasets(
    client: MlflowClient, store: BucketTrackingStore, tracking: str
) -> None:
    import pandas as pd

    eid = client.create_experiment("data")
    with mlflow.start_run(experiment_id=eid) as run:
        frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
    other = client.create_run(eid).info.run_id
    dataset = Dataset("eval", "d1", "local", "/data/eval")
    client.log_inputs(other, [DatasetInput(dataset, [InputTag("mlflow.data.context", "eval")])])

    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "train"
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    summaries = store._search_datasets([eid])
    assert sorted((s.name, s.context) for s in summaries) == [
        ("eval", "eval"),
        ("train", "training"),
    ]
    found = client.search_runs([eid], "dataset.name = 'train'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    found = client.search_runs([eid], "dataset.context = 'eval'")
    assert [r.info.run_id for r in found] == [other]


def test_search_runs(client: MlflowClient) -> None:
    eid = client.create_experiment("search")
    ids = []
    for i in range(7):
        run = client.create_run(eid, start_time=1000 + i, run_name=f"run-{i}")
        run_id = run.info.run_id
        ids.append(run_id)
        client.log_batch(
            run_id,
            metrics=[Metric("acc", i / 10, 1, 0)],
            params=[Param("model", "big" if i % 2 else "small")],
            tags=[RunTag("owner", "ann" if i < 4 else "bob")],
        )
    client.set_terminated(ids[6], "FAILED")

    def found(filter_string: str = "", order_by: list[str] | None = None) -> list[int]:
        runs = client.search_runs([eid], filter_string, order_by=order_by)
        return [ids.index(r.info.run_id) for r in runs]

    assert found() == [6, 5, 4, 3, 2, 1, 0]  # newest first
    assert found("metrics.acc > 0.35") == [6, 5, 4]
    assert found("params.model = 'big'", ["metrics.acc ASC"]) == [1, 3, 5]
    assert found("tags.owner = 'bob' AND metrics.acc < 0.55") == [5, 4]
    assert found("attributes.status = 'FAILED'") == [6]
    assert found("attributes.run_name LIKE 'run-1%'") == [1]
    assert found("attributes.start_time >= 1005") == [6, 5]
    assert found(f"attributes.run_id IN ('{ids[2]}', '{ids[3]}')") == [3, 2]
    assert found("", ["params.model DESC", "metrics.acc DESC"]) == [6, 4, 2, 0, 5, 3, 1]

    pages, token = [], None
    while True:
        page = client.search_runs([eid], max_results=3, page_token=token)
        pages.append(len(page))
        token = page.token
        if not token:
            break
    assert pages == [3, 3, 1]

    for bad in ("metrics.acc >> 1", "nothing.x = 1", "params.model = big"):
        with pytest.raises(MlflowException) as exc:
            client.search_runs([eid], bad)
        assert _code(exc) == "INVALID_PARAMETER_VALUE"


# -- permanent deletion (mlflow gc) ----------------------------------------------------


def test_gc_store_methods(client: MlflowClient, store: BucketTrackingStore) -> None:
    eid = client.create_experiment("gc")
    keep = client.create_run(eid).info.run_id
    drop = client.create_run(eid).info.run_id
    client.log_metric(drop, "m", 1.0)
    client.delete_run(drop)
    assert store._get_deleted_runs() == [drop]
    assert store._get_deleted_runs(older_than=10**9) == []
    store._hard_delete_run(drop)
    with pytest.raises(MlflowException) as exc:
        client.get_run(drop)
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_run(keep).info.lifecycle_stage == LifecycleStage.ACTIVE

    model = client.create_logged_model(eid, name="m")
    client.delete_logged_model(model.model_id)
    assert store._get_deleted_logged_models() == [model.model_id]
    store._hard_delete_logged_model(model.model_id)
    with pytest.raises(MlflowException):
        client.get_logged_model(model.model_id)

    with pytest.raises(MlflowException) as exc:
        store._hard_delete_experiment(eid)  # still active
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"
    client.delete_experiment(eid)
    store._hard_delete_experiment(eid)
    with pytest.raises(MlflowException):
        client.get_experiment(eid)
    with pytest.raises(MlflowException):
        client.get_run(keep)
    assert client.create_experiment("gc") != eid  # the name is free, ids are never reused


def _child_env(info: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_BUCKET_")}
    env.update(info.env)
    env["MLFLOW_BUCKET_SPOOL_DIR"] = str(tmp_path / "child-spool")
    env["MLFLOW_BUCKET_CACHE_DIR"] = str(tmp_path / "child-cache")
    return env


def _gc_deletes_logged_models() -> bool:
    """Whether this MLflow's `mlflow gc` purges logged models (later 3.x releases)."""
    import inspect

    import mlflow.cli

    return "_hard_delete_logged_model" in inspect.getsource(mlflow.cli)


@pytest.mark.emulator
def test_mlflow_gc_command_on_gcs(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"gs://{gcs_env.bucket}/mlflow"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        eid = client.create_experiment("gc")
        keep = client.create_run(eid).info.run_id
        with mlflow.start_run(experiment_id=eid) as run:
            mlflow.log_text("bye", "note.txt")
        drop = run.info.run_id
        client.delete_run(drop)
        gone = client.create_experiment("gone")
        client.create_run(gone)
        client.delete_experiment(gone)
        model = client.create_logged_model(eid, name="old")
        client.delete_logged_model(model.model_id)
        forget_backends()  # everything in the bucket before the other process looks

        result = subprocess.run(
            [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri],
            env=_child_env(gcs_env, tmp_path),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"Run with ID {drop} has been permanently deleted" in result.stdout
        assert f"Experiment with ID {gone} has been permanently deleted" in result.stdout
        if _gc_deletes_logged_models():
            assert f"Logged model with ID {model.model_id}" in result.stdout

        client = reopen(uri)
        with pytest.raises(MlflowException):
            client.get_run(drop)
        with pytest.raises(MlflowException):
            client.get_experiment(gone)
        assert client.get_run(keep).info.lifecycle_stage == LifecycleStage.ACTIVE
        assert client.list_artifacts(keep) == []
    finally:
        forget_backends()
        mlflow.set_tracking_uri(previous)


# -- logged models (MLflow 3) ----------------------------------------------------------


def test_sklearn_log_model_and_the_models_tab(client: MlflowClient) -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    assert sklearn
    eid = client.create_experiment("models")
    with mlflow.start_run(experiment_id=eid) as run:
        fitted = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        # Given requirements (inferring them loads the model in a subprocess) and
        # cloudpickle (skops takes seconds to import): this test is about the store.
        info = mlflow.sklearn.log_model(
            fitted,
            name="clf",
            params={"C": "1.0"},
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
        mlflow.log_metric("acc", 0.9, model_id=info.model_id)

    model = client.get_logged_model(info.model_id)
    assert model.status == LoggedModelStatus.READY
    assert model.source_run_id == run.info.run_id and model.experiment_id == eid
    assert model.name == "clf" and model.params == {"C": "1.0"}
    assert [(m.key, m.value, m.run_id) for m in model.metrics] == [("acc", 0.9, run.info.run_id)]
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [info.model_id]
    assert model.tags["mlflow.source.type"] == "LOCAL"  # the run's context tags, as in SQL

    # What the Models tab asks for.
    found = client.search_logged_models([eid], filter_string="metrics.acc > 0.5")
    assert [m.model_id for m in found] == [info.model_id]
    loaded = mlflow.sklearn.load_model(f"models:/{info.model_id}")
    assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]

    client.set_logged_model_tags(info.model_id, {"stage": "candidate"})
    client.delete_logged_model_tag(info.model_id, "stage")
    assert "stage" not in client.get_logged_model(info.model_id).tags
    client.delete_logged_model(info.model_id)
    assert client.search_logged_models([eid]).to_list() == []
    with pytest.raises(MlflowException) as exc:
        client.get_logged_model(info.model_id)
    assert _code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_record_logged_model_keeps_a_history_tag(
    client: MlflowClient, store: BucketTrackingStore
) -> None:
    from mlflow.models import Model

    run_id = client.create_run("0").info.run_id
    store.record_logged_model(run_id, Model(artifact_path="one", run_id=run_id))
    store.record_logged_model(run_id, Model(artifact_path="two", run_id=run_id))
    history = json.loads(client.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert [h["artifact_path"] for h in history] == ["one", "two"]
    with pytest.raises(TypeError):
        store.record_logged_model(run_id, "not a model")


def test_logged_model_calls(client: MlflowClient, store: BucketTrackingStore) -> None:
    eid = client.create_experiment("lm")
    first = client.create_logged_model(eid, name="a", tags={"t": "1"}, model_type="sk")
    second = client.create_logged_model(eid, name="b")
    assert first.status == LoggedModelStatus.PENDING
    assert client.finalize_logged_model(first.model_id, "READY").status == LoggedModelStatus.READY
    store.set_logged_model_tags(second.model_id, [LoggedModelTag("t", "2")])
    found = client.search_logged_models([eid], order_by=[{"field_name": "name"}])
    assert [m.name for m in found] == ["a", "b"]
    found = client.search_logged_models([eid], filter_string="tags.t = '2'")
    assert [m.name for m in found] == ["b"]
    page = client.search_logged_models([eid], max_results=1)
    assert len(page) == 1 and page.token
    rest = client.search_logged_models([eid], max_results=1, page_token=page.token)
    assert [m.name for m in rest] == ["a"] and rest.token is None
    with pytest.raises(MlflowException) as exc:
        client.search_logged_models([eid], order_by=[{"field_name": "params.x"}])
    assert _code(exc) == "INVALID_PARAMETER_VALUE"
    client.delete_experiment(eid)
    with pytest.raises(MlflowException) as exc:
        client.create_logged_model(eid)
    assert _code(exc) == "INVALID_PARAMETER_VALUE"


# -- traces and the GenAI calls the UI makes ---------------------------------------------


def test_trace_calls_answer_empty_or_not_supported(client: MlflowClient) -> None:
    assert client.search_traces(locations=["0"]) == []
    with pytest.raises(MlflowException) as exc:
        client.get_trace("tr-0123")
    assert _code(exc) in ("NOT_IMPLEMENTED", "RESOURCE_DOES_NOT_EXIST")


def _crashing_endpoints(uri: str, monkeypatch: pytest.MonkeyPatch) -> tuple[set[Any], Any, str]:
    """Call every tracking endpoint of the stock server on ``uri``; those answering 5xx (not 501).

    Made-up ids and minimal arguments, as a UI page would send them.
    """
    import re

    from mlflow.protos.service_pb2 import MlflowService
    from mlflow.server import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR, app, handlers

    monkeypatch.setenv(BACKEND_STORE_URI_ENV_VAR, uri)
    monkeypatch.setenv(ARTIFACT_ROOT_ENV_VAR, f"{uri}/artifacts")
    reset_server_stores()
    web = app.test_client()
    created = web.post("/ajax-api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
    assert created.status_code == 200
    run_id = created.get_json()["run"]["info"]["run_id"]
    crashes = set()
    for path, _, methods in handlers.get_service_endpoints(MlflowService, handlers.get_handler):
        if not path.startswith("/ajax-api/") or "/workspaces" in path:
            continue
        url = re.sub(r"<(\w+)>", lambda m: run_id if m.group(1) == "run_id" else "x-1", path)
        for method in methods:
            if method == "GET":
                args = {"experiment_id": "0", "experiment_ids": "0", "run_id": run_id}
                response = web.open(url, method=method, query_string=args)
            else:
                body = {"experiment_id": "0", "experiment_ids": ["0"], "run_id": run_id}
                response = web.open(url, method=method, json=body)
            if response.status_code >= 500 and response.status_code != 501:
                crashes.add((method, path))
    return crashes, web, run_id


def test_server_endpoints_never_crash(
    tracking: str, monkeypatch: pytest.MonkeyPatch, make_sqlite_store: Any
) -> None:
    """No tracking endpoint of the stock server answers 500 on the bucket store.

    Unless it does on MLflow's own SQL store too (a bug of that MLflow's
    handler, such as 3.5's DELETE traces/<id>/tags): 200 (often empty), 4xx,
    or 501 NOT_IMPLEMENTED for what the bucket does not hold.
    """
    sql_uri = make_sqlite_store().db_uri
    sql_crashes, _, _ = _crashing_endpoints(sql_uri, monkeypatch)
    crashes, web, run_id = _crashing_endpoints(tracking, monkeypatch)
    assert crashes - sql_crashes == set()
    # The run page's charts: the server's two bulk history endpoints.
    MlflowClient(tracking).log_batch(
        run_id, metrics=[Metric("loss", 1 / (i + 1), i, i) for i in range(50)]
    )
    args = {"run_ids": run_id, "metric_key": "loss", "max_results": 5}
    sampled = web.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", query_string=args)
    assert sampled.status_code == 200
    assert [m["step"] for m in sampled.get_json()["metrics"]] == [0, 10, 20, 30, 49]
    args = {"run_id": run_id, "metric_key": "loss", "max_results": 5}
    bulk = web.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk", query_string=args)
    assert bulk.status_code == 200
    assert [m["step"] for m in bulk.get_json()["metrics"]] == [0, 1, 2, 3, 4]
    search = web.post(
        "/ajax-api/3.0/mlflow/traces/search",
        json={
            "locations": [
                {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}
            ]
        },
    )
    assert search.status_code == 200 and not search.get_json().get("traces")


# -- a local folder, and the emulated buckets ---------------------------------------------


def test_local_folder_store(tmp_path: Path) -> None:
    store = BucketTrackingStore(str(tmp_path / "store"))
    eid = store.create_experiment("local")
    run = store.create_run(eid, "ann", 1, [], "r")
    store.log_batch(run.info.run_id, [Metric("m", 1.0, 1, 0)], [Param("p", "1")], [])
    store.flush()
    forget_backends()
    again = BucketTrackingStore(str(tmp_path / "store"))
    got = again.get_run(run.info.run_id)
    assert got.data.metrics == {"m": 1.0} and got.data.params == {"p": "1"}


def _round_trip(uri: str) -> None:
    """Plain MLflow code against ``uri``, then a fresh process-state reading it back."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("emulated")
        with mlflow.start_run(run_name="first") as run:
            mlflow.log_params({"lr": "0.1", "layers": "3"})
            for step in range(20):
                mlflow.log_metric("loss", 1 / (step + 1), step=step)
            mlflow.set_tag("team", "a")
        client = MlflowClient(uri)
        with pytest.raises(MlflowException) as exc:
            client.log_param(run.info.run_id, "lr", "0.2")
        assert _code(exc) == "INVALID_PARAMETER_VALUE"
        client = reopen(uri)  # flush; the next reads start cold from the bucket
        exp = client.get_experiment_by_name("emulated")
        assert exp is not None and exp.artifact_location == f"{uri}/artifacts/{exp.experiment_id}"
        (found,) = client.search_runs([exp.experiment_id], "params.lr = '0.1'")
        assert found.info.run_name == "first" and found.data.tags["team"] == "a"
        assert found.info.status == RunStatus.to_string(RunStatus.FINISHED)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.step for m in history] == list(range(20))
        assert client.search_traces(locations=[exp.experiment_id]) == []
    finally:
        forget_backends()
        mlflow.set_tracking_uri(previous)


@pytest.mark.emulator
def test_round_trip_on_gcs(gcs_env: Any) -> None:
    _round_trip(f"gs://{gcs_env.bucket}/team")


@pytest.mark.emulator
def test_round_trip_on_s3(s3_env: Any) -> None:
    _round_trip(f"s3://{s3_env.bucket}/team")


@pytest.mark.emulator
def test_experiment_lifecycle_on_gcs(gcs_env: Any) -> None:
    uri = f"gs://{gcs_env.bucket}/team"
    client = MlflowClient(uri)
    try:
        eid = client.create_experiment("life", tags={"k": "v"})
        run_id = client.create_run(eid).info.run_id
        client.delete_experiment(eid)
        client = reopen(uri)
        assert client.get_run(run_id).info.lifecycle_stage == LifecycleStage.DELETED
        client.restore_experiment(eid)
        client.set_experiment_tag(eid, "k", "w")
        client = reopen(uri)
        assert client.get_experiment(eid).tags == {"k": "w"}
        assert client.get_run(run_id).info.lifecycle_stage == LifecycleStage.ACTIVE
    finally:
        forget_backends()
