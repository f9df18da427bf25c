"""Each example runs unchanged against the GCS emulator, configured by environment alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

EXAMPLES = Path(__file__).parents[1] / "examples"


def _run_example(name: str, uri: str, env: dict[str, str], tmp_path: Path) -> str:
    full_env = {
        **os.environ,
        **env,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_BUCKET_SPOOL_DIR": str(tmp_path / "spool"),
        "MLFLOW_BUCKET_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_first_run_lands_in_the_bucket(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    out = _run_example("first_run.py", uri, gcs_env.env, tmp_path)
    run_id = out.split("logged run ")[1].split()[0]
    # A fresh reader (this process, its own Backend) sees everything.
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params == {"learning_rate": "0.05", "epochs": "20"}
    assert run.data.tags["team"] == "ml"
    assert len(client.get_metric_history(run_id, "loss")) == 20
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/summary.json"]
