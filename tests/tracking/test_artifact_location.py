"""An experiment keeps the artifact location it was created with, stored in the bucket:
a reader's own settings decide only where the experiments it creates go."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow_bucket_plugins.mlflow_compat import forget_store_instances, tracking_store_for
from mlflow_bucket_plugins.tracking.backend import forget_backends


def _as_new_process(monkeypatch: pytest.MonkeyPatch, uri: str, artifact_root: str | None) -> None:
    forget_backends()
    forget_store_instances()
    monkeypatch.setenv("MLFLOW_BUCKET_USER_CONFIG", "")
    if artifact_root is None:
        monkeypatch.delenv("MLFLOW_BUCKET_URI", raising=False)
        monkeypatch.delenv("MLFLOW_BUCKET_ARTIFACT_ROOT", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_BUCKET_URI", uri)
        monkeypatch.setenv("MLFLOW_BUCKET_ARTIFACT_ROOT", artifact_root)


def test_a_teammate_without_the_setting_finds_the_same_location(
    memory_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_new_process(monkeypatch, memory_uri, "memory://team-artifacts/mlflow")
    writer = MlflowClient(memory_uri)
    eid = writer.create_experiment("configured")
    given = writer.create_experiment("given", artifact_location="memory://elsewhere/x")
    run = writer.create_run(eid)
    assert writer.get_experiment(eid).artifact_location == f"memory://team-artifacts/mlflow/{eid}"
    assert (
        run.info.artifact_uri == f"memory://team-artifacts/mlflow/{eid}/{run.info.run_id}/artifacts"
    )
    assert tracking_store_for(memory_uri).flush(30)

    # A teammate with no artifact_root, then the writer with another one: same answers.
    for root in (None, "memory://moved/mlflow"):
        _as_new_process(monkeypatch, memory_uri, root)
        reader = MlflowClient(memory_uri)
        assert (
            reader.get_experiment(eid).artifact_location == f"memory://team-artifacts/mlflow/{eid}"
        )
        assert reader.get_experiment(given).artifact_location == "memory://elsewhere/x"
        assert reader.get_run(run.info.run_id).info.artifact_uri == run.info.artifact_uri
        assert reader.get_experiment("0").artifact_location == f"{memory_uri}/artifacts/0"

    # New experiments follow the current process's setting.
    fresh = MlflowClient(memory_uri).create_experiment("after the move")
    assert MlflowClient(memory_uri).get_experiment(fresh).artifact_location == (
        f"memory://moved/mlflow/{fresh}"
    )


def test_the_servers_proxy_root_is_not_where_a_bucket_keeps_artifacts(memory_uri: str) -> None:
    """`mlflow server` (serving artifacts, its default) hands the store `mlflow-artifacts:/`:
    that would read as a host named after the experiment id (mlflow-artifacts://15)."""
    from mlflow_bucket_plugins.tracking.store import BucketTrackingStore

    store = BucketTrackingStore(memory_uri, "mlflow-artifacts:/")
    eid = store.create_experiment("through the server")
    assert store.get_experiment(eid).artifact_location == f"{memory_uri}/artifacts/{eid}"
    other = BucketTrackingStore(memory_uri, "memory://given-root/")
    eid2 = other.create_experiment("with a root")
    assert other.get_experiment(eid2).artifact_location == f"memory://given-root/{eid2}"
