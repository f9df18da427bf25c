"""The REST calls behind the UI's Models pages, on `mlflow server` started as a user
types it over a bucket (the GCS emulator)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from mlflow_servers import Server, clean_env, running_server

from mlflow_bucket.testing.pytest_plugin import BucketInfo

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(600)]


class Web:
    """requests against a running server, shaped like Flask's test client."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def post(self, path: str, json: Any) -> Any:
        return _Answer(requests.post(f"{self.server.url}{path}", json=json, timeout=60))

    def get(self, path: str, query_string: dict[str, Any] | None = None) -> Any:
        return _Answer(requests.get(f"{self.server.url}{path}", params=query_string, timeout=60))


class _Answer:
    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.json = response.json()


@pytest.fixture
def server(gcs_env: BucketInfo, tmp_path: Path) -> Iterator[Web]:
    env = clean_env(tmp_path / "home")
    env.update(gcs_env.env)
    with running_server("bucket", f"{gcs_env.url}/mlflow", tmp_path / "server", env) as running:
        yield Web(running)


def test_the_models_pages(server: Web, gcs_env: BucketInfo) -> None:
    uri = f"{gcs_env.url}/mlflow"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run("0")
    run_id = run.info.run_id
    api = "/ajax-api/2.0/mlflow"

    # Created through the server, as the UI's "Register model" dialog does.
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
    assert "webhook" not in server.server.log_text().lower()
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
    # `mlflow server` runs 4 worker processes: one that read the registry in the last
    # second answers from that read until its refresh (docs/registry.md, "Other processes
    # see a write within the refresh interval").
    deadline = time.monotonic() + 10
    while True:
        answer = server.get(f"{api}/registered-models/get", query_string={"name": "m"})
        model = answer.json["registered_model"]
        if model.get("aliases") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
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
