"""The REST calls behind the UI's Models pages, through MLflow's own server handlers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow_bucket_plugins.registry.store import BucketRegistryStore
from mlflow_bucket_plugins.tracking.store import BucketTrackingStore


@pytest.fixture
def server(memory_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from mlflow.server import app, handlers

    monkeypatch.setattr(handlers, "_tracking_store", BucketTrackingStore(memory_uri))
    monkeypatch.setattr(handlers, "_model_registry_store", BucketRegistryStore(memory_uri))
    yield app.test_client()


def test_the_models_pages(server: Any, memory_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    client = MlflowClient(tracking_uri=memory_uri, registry_uri=memory_uri)
    run = client.create_run("0")
    run_id = run.info.run_id
    api = "/ajax-api/2.0/mlflow"

    # Created through the server, as the UI's "Register model" dialog does.
    with caplog.at_level(logging.ERROR):
        answer = server.post(f"{api}/registered-models/create", json={"name": "m"})
        assert answer.status_code == 200, answer.json
        for _ in range(2):
            answer = server.post(
                f"{api}/model-versions/create",
                json={"name": "m", "source": f"runs:/{run_id}/model", "run_id": run_id},
            )
            assert answer.status_code == 200, answer.json
    # No webhook is stored in a bucket: delivering the registry's events finds none,
    # quietly.
    assert not [r for r in caplog.records if "webhook" in r.getMessage().lower()]
    assert answer.json["model_version"]["version"] == "2"

    answer = server.post(
        f"{api}/registered-models/alias", json={"name": "m", "alias": "champion", "version": "2"}
    )
    assert answer.status_code == 200, answer.json

    # The run page: which versions came from this run.
    answer = server.get(
        f"{api}/model-versions/search", query_string={"filter": f"run_id='{run_id}'"}
    )
    assert sorted(v["version"] for v in answer.json["model_versions"]) == ["1", "2"]
    # The models list and a model's page.
    answer = server.get(f"{api}/registered-models/search", query_string={"max_results": 10})
    assert [m["name"] for m in answer.json["registered_models"]] == ["m"]
    answer = server.get(f"{api}/registered-models/get", query_string={"name": "m"})
    model = answer.json["registered_model"]
    assert model["aliases"] == [{"alias": "champion", "version": "2"}]
    answer = server.get(
        f"{api}/registered-models/alias", query_string={"name": "m", "alias": "champion"}
    )
    assert answer.json["model_version"]["version"] == "2"
    answer = server.get(f"{api}/model-versions/get", query_string={"name": "m", "version": "1"})
    assert answer.json["model_version"]["run_id"] == run_id

    answer = server.post(f"{api}/registered-models/create", json={"name": "m"})
    assert (answer.status_code, answer.json["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    answer = server.get(f"{api}/registered-models/get", query_string={"name": "nope"})
    assert (answer.status_code, answer.json["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
