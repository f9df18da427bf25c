"""Plain MLflow code against artifact URIs of the engine's schemes.

The tracking store here is MLflow's SQLite one; only the artifact location
(the experiment's) points at the bucket, so MLflow reaches these repositories
through its own registry and the ``mlflow.artifact_repository`` entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow_bucket_plugins.artifacts import BucketArtifactRepository

BACKENDS = ["memory", "gcs", "s3"]


@pytest.fixture
def experiment(
    store_target: tuple[str, dict[str, Any], Any], make_repo: Any, tmp_path: Path
) -> Any:
    location = make_repo().artifact_uri.rsplit("/", 2)[0]  # <store>/exp-1
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        yield mlflow.create_experiment("artifacts", artifact_location=location)
    finally:
        mlflow.set_tracking_uri(None)


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return [2 * x for x in model_input]


def test_mlflow_logs_and_reads_through_the_plugin(experiment: str, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"k": [1, 2]}, "config.json")
        mlflow.log_artifacts(str(folder), "folder")
        mlflow.log_param("p", 1)
        info = mlflow.pyfunc.log_model(name="model", python_model=Doubler())
    repo = get_artifact_repository(run.info.artifact_uri)
    assert isinstance(repo, BucketArtifactRepository)

    client = mlflow.MlflowClient()
    top = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"notes", "config.json", "folder"} <= top
    assert [f.path for f in client.list_artifacts(run.info.run_id, "folder")] == [
        "folder/b.txt",
        "folder/sub",
    ]
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/notes/hello.txt") == "hello"
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json") == {"k": [1, 2]}
    got = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="folder", dst_path=str(tmp_path / "dl")
    )
    assert Path(got, "sub", "a.txt").read_text() == "a"

    # MLflow 3 logged models keep their own artifact location in the bucket.
    model = mlflow.pyfunc.load_model(info.model_uri)
    assert model.predict([1, 2, 3]) == [2, 4, 6]


def test_the_switch_brings_back_mlflows_own_repositories(
    store_target: tuple[str, dict[str, Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme = store_target[0].split(":", 1)[0]
    if scheme == "memory":
        pytest.skip("MLflow has no repository of its own for memory://")
    uri = f"{store_target[0]}/x"
    assert isinstance(get_artifact_repository(uri), BucketArtifactRepository)
    monkeypatch.setenv("MLFLOW_BUCKET_ARTIFACTS", "builtin")
    builtin = get_artifact_repository(uri)
    assert not isinstance(builtin, BucketArtifactRepository)
    assert type(builtin).__module__.startswith("mlflow.store.artifact.")
