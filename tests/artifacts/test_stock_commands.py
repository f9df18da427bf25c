"""The stock `mlflow server` and `mlflow ui` on a bucket, with no flag beyond the backend
store URI, as docs/ui.md says they work: artifacts logged straight into the bucket list
and download through them, and artifacts logged through them land in the bucket, where
every direct reader finds them (not in ./mlartifacts on the server's machine)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow_servers import clean_env, running_server

from mlflow_bucket.testing.pytest_plugin import BucketInfo

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(600)]


@pytest.mark.parametrize("command", ["server", "ui"])
def test_stock_command_lists_downloads_and_stores_artifacts_in_the_bucket(
    command: str, gcs_env: BucketInfo, tmp_path: Path
) -> None:
    uri = f"{gcs_env.url}/mlflow"
    direct = MlflowClient(uri)
    eid = direct.create_experiment("direct")
    run = direct.create_run(eid)
    (tmp_path / "model.txt").write_text("logged straight into the bucket")
    direct.log_artifact(run.info.run_id, str(tmp_path / "model.txt"), "out")
    direct.set_terminated(run.info.run_id)

    env = clean_env(tmp_path / "home")
    env.update(gcs_env.env)
    folder = tmp_path / "server"
    with running_server(command, uri, folder, env, command=command) as server:
        api = f"{server.url}/ajax-api/2.0/mlflow"
        # The experiment's location is in the bucket, as a direct reader has it.
        got = requests.get(f"{api}/experiments/get", params={"experiment_id": eid}, timeout=60)
        location = got.json()["experiment"]["artifact_location"]
        assert location == direct.get_experiment(eid).artifact_location
        assert location.startswith(f"{gcs_env.url}/")
        # The run page's artifact list, and a download, of the run logged directly.
        listed = requests.get(
            f"{api}/artifacts/list", params={"run_id": run.info.run_id, "path": "out"}, timeout=60
        )
        assert listed.status_code == 200, listed.text
        assert [f["path"] for f in listed.json()["files"]] == ["out/model.txt"]
        download = requests.get(
            f"{server.url}/get-artifact",
            params={"run_id": run.info.run_id, "path": "out/model.txt"},
            timeout=60,
        )
        assert download.status_code == 200, download.text
        assert download.text == "logged straight into the bucket"

        # A script logging through the server: its experiment and artifacts land in the
        # bucket.
        through = MlflowClient(server.url)
        eid2 = through.create_experiment("through the server")
        run2 = through.create_run(eid2)
        (tmp_path / "second.txt").write_text("logged through the server")
        through.log_artifact(run2.info.run_id, str(tmp_path / "second.txt"))
        assert run2.info.artifact_uri.startswith(f"{gcs_env.url}/")

        # The server runs several workers; each call of a script may reach another
        # one, which must know the run the previous call created.
        for step in range(8):
            made = through.create_run(eid2).info.run_id
            through.log_param(made, "step", str(step))
            through.log_metric(made, "m", step)
            through.set_terminated(made)
            assert through.get_run(made).data.params == {"step": str(step)}

    assert not (folder / "mlartifacts").exists()
    reader = MlflowClient(uri)
    assert reader.get_run(run2.info.run_id).info.artifact_uri == run2.info.artifact_uri
    fetched = mlflow.artifacts.download_artifacts(
        run_id=run2.info.run_id,
        artifact_path="second.txt",
        dst_path=str(tmp_path / "got"),
        tracking_uri=uri,
    )
    assert Path(fetched).read_text() == "logged through the server"
