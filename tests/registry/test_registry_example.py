"""examples/compare_and_promote.py runs unchanged against the GCS emulator, twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

EXAMPLE = Path(__file__).parents[2] / "examples" / "compare_and_promote.py"
KEY = "mlflow_bucket.promotion.champion"


def _run(uri: str, env: dict[str, str], tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={
            **os.environ,
            **env,
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_BUCKET_SPOOL_DIR": str(tmp_path / "spool"),
            "MLFLOW_BUCKET_CACHE_DIR": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.emulator
def test_compare_and_promote_against_the_gcs_emulator(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    out = _run(uri, dict(gcs_env.env), tmp_path)
    assert "baseline: accuracy" in out and "registered as iris-classifier version 1" in out
    assert "promote: promoted (@champion points at no version" in out
    assert "logistic-regression: accuracy 1.000, registered as iris-classifier version 2" in out
    assert "promote: promoted (version 2 (accuracy=1.0) beats version 1" in out
    assert "champion: iris-classifier version 2" in out
    assert "predictions for 5 test rows: [1, 0, 2, 1, 1]; truth: [1, 0, 2, 1, 1]" in out

    # Everything is in the bucket: a fresh reader (this process) sees the decisions.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("iris-classifier", "champion")
    assert champion.version == 2
    assert champion.tags[f"{KEY}.decision"] == "promoted"
    assert champion.tags[f"{KEY}.previous_version"] == "1"
    assert champion.model_id and champion.source == f"models:/{champion.model_id}"
    assert client.get_run(champion.run_id).data.metrics["accuracy"] == 1.0
    by_run = client.search_model_versions(f"run_id = '{champion.run_id}'")
    assert [int(v.version) for v in by_run] == [2]
