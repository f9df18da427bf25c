"""The README's main command: the example script into a store, then the UI over it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_bucket.demo import EXAMPLE_SCRIPT, EXAMPLES_DIR


def _demo(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "demo", *args, "--no-wait", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_script_names_an_example_that_exists() -> None:
    assert (EXAMPLES_DIR / EXAMPLE_SCRIPT).is_file()


def test_demo_on_the_local_gcs_emulator() -> None:
    out = _demo()
    assert "Started a local GCS emulator at http://127.0.0.1:" in out
    assert f"Running examples/{EXAMPLE_SCRIPT} into gs://mlflow-demo/team" in out
    # The UI's own server reads the sweep the script logged: parent run and trials.
    runs = re.search(r"^  sweep: (\d+) runs$", out, re.MULTILINE)
    assert runs is not None, out
    assert int(runs.group(1)) >= 2
    assert re.search(r"^MLflow UI for gs://mlflow-demo/team: http://127\.0\.0\.1:\d+$", out, re.M)


@pytest.mark.slow
def test_demo_on_a_folder_is_the_same_command(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MLFLOW_BUCKET_SPOOL_DIR": str(tmp_path / "spool"),
        "MLFLOW_BUCKET_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = _demo(str(tmp_path / "store"), env=env)
    assert re.search(r"^  sweep: \d+ runs$", out, re.MULTILINE), out
    assert f"MLflow UI for bucket+file://{tmp_path / 'store'}: http://" in out
    assert (tmp_path / "store" / "artifacts").is_dir() or any((tmp_path / "store").iterdir())


def test_a_store_the_demo_cannot_use_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "demo", "memory://x/y", "--no-wait"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "mlflow-bucket demo: error: memory://x/y lives in one process only" in done.stderr
