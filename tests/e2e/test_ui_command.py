"""``mlflow-bucket ui`` before any server starts: which store, and clear refusals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlflow_bucket.ui import resolve_store, serve


def _ui(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "ui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_BUCKET_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_BUCKET_USER_CONFIG", "")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_folder_on_the_command_line_is_a_folder_store(no_config: Path) -> None:
    served = resolve_store(str(no_config / "store"))
    assert served.uri == f"bucket+file://{no_config / 'store'}"
    assert served.registry_uri == served.uri
    # Where the tracking store puts artifacts by itself: experiments created in
    # the UI keep theirs in the same place as scripts'.
    assert served.artifact_root == f"file://{no_config / 'store'}/artifacts"


def test_the_project_file_names_store_registry_and_artifact_root(no_config: Path) -> None:
    (no_config / "mlflow-bucket.toml").write_text(
        'uri = "gs://team-bucket/mlflow"\n'
        'registry_uri = "gs://team-bucket/registry"\n'
        'artifact_root = "gs://team-artifacts/mlflow"\n'
    )
    served = resolve_store(None)
    assert served.uri == "gs://team-bucket/mlflow"
    assert served.registry_uri == "gs://team-bucket/registry"
    assert served.artifact_root == "gs://team-artifacts/mlflow"
    # Another store on the command line takes none of the project's.
    other = resolve_store("gs://other-bucket/x")
    assert (other.registry_uri, other.artifact_root) == (
        "gs://other-bucket/x",
        "gs://other-bucket/x/artifacts",
    )


def test_refusals_say_why_with_the_documented_codes(no_config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_BUCKET_USER_CONFIG"] = ""
    nothing = _ui(cwd=no_config, env=env)
    assert nothing.returncode == 3
    assert "no store given and none configured" in nothing.stderr
    memory = _ui("memory://bucket/prefix", cwd=no_config, env=env)
    assert memory.returncode == 2
    assert "lives in one process only" in memory.stderr
    server = _ui(cwd=no_config, env={**env, "MLFLOW_TRACKING_URI": "http://localhost:5000"})
    assert server.returncode == 3
    assert "is not a bucket store" in server.stderr
    assert "Traceback" not in nothing.stderr + memory.stderr + server.stderr


def test_a_port_in_use_is_refused_before_anything_starts(no_config: Path) -> None:
    from mlflow_bucket.ui import UiError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = resolve_store(str(no_config / "store"))
        with (
            pytest.raises(UiError, match=f"cannot listen on 127.0.0.1:{port}"),
            serve(served, port=port),
        ):
            pass


def _start_ui(store: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``mlflow-bucket ui`` as from a terminal: its own process group, SIGINT armed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow_bucket.cli", "ui", str(store), "--port", "0"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # A shell's background job would have SIGINT ignored; a terminal's has not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (found := re.search(r"MLflow UI for \S+: (http://\S+)", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the UI did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return process, found.group(1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5):
            return True
    except OSError:
        return False


def _gone(url: str) -> bool:
    deadline = time.monotonic() + 30
    while _answers(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def test_ctrl_c_stops_the_server_cleanly(no_config: Path) -> None:
    log = no_config / "ui.log"
    process, url = _start_ui(no_config / "store", log)
    assert _answers(url)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert process.wait(timeout=60) == 0
    assert _gone(url)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.mark.slow
def test_the_server_does_not_outlive_a_killed_command(no_config: Path) -> None:
    # Linux only (the server gets SIGTERM when the command dies), and only with an
    # MLflow whose CLI passes SIGTERM on to uvicorn (3.17 does, 3.5 does not).
    process, url = _start_ui(no_config / "store", no_config / "ui.log")
    process.kill()
    process.wait()
    assert _gone(url)
