"""The README's main command on its built-in default."""

from __future__ import annotations

import subprocess
import sys


def test_demo_logs_into_a_local_gcs_emulator() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "demo", "--no-wait"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "Logged sample run" in out
    assert "gs://mlflow-demo/team/demo/runs/" in out
    assert "curl 'http://127.0.0.1:" in out


def test_demo_on_a_folder(tmp_path: object) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "demo", str(tmp_path), "--no-wait"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "demo/README" in out
