"""PostgreSQL behind MLflow's SQL store, as a source and as an export's destination."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fill import fill
from mlflow import MlflowClient
from test_round_trip import run


def test_postgres_to_bucket_and_back(
    postgres: Callable[[str], str], bucket_uri: str, tmp_path: Path
) -> None:
    source = postgres("source")
    made = fill(source, str(tmp_path / "source-artifacts"))
    assert run("import", source, "--to", bucket_uri) == 0
    assert run("verify", source, bucket_uri, "--ids") == 0

    back = postgres("back")
    root = str(tmp_path / "back-artifacts")
    assert run("export", back, "--from", bucket_uri, "--artifact-root", root) == 0
    assert run("verify", source, back, "--ids") == 0
    # Ids were given explicitly: the database's own numbering goes on after them.
    client = MlflowClient(back)
    assert int(client.create_experiment("after the export")) > 2
    assert client.get_run(made["runs"][0]).data.params["名前"] == "値 ✓"
