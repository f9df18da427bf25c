"""``mlflow-bucket ui``: which store, clear refusals, stopping, and who may reach it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlflow_bucket.ui import (
    Served,
    allowed_hosts,
    cors_origins,
    is_loopback,
    resolve_store,
    serve,
    server_command,
)


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


def _start_ui(store: Path, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``mlflow-bucket ui`` as from a terminal: its own process group, SIGINT armed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow_bucket.cli", "ui", str(store), "--port", "0", *args],
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
    # On the loopback address: no warning.
    assert "WARNING: the MLflow UI" not in log.read_text()


@pytest.mark.slow
def test_the_server_does_not_outlive_a_killed_command(no_config: Path) -> None:
    # Linux only (the server gets SIGTERM when the command dies), and only with an
    # MLflow whose CLI passes SIGTERM on to uvicorn (3.17 does, 3.5 does not).
    process, url = _start_ui(no_config / "store", no_config / "ui.log")
    process.kill()
    process.wait()
    assert _gone(url)


# -- who may reach it ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),  # Debian's name for the machine's own address
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("10.0.0.7", False),
        ("no-such-host.invalid", False),
    ],
)
def test_which_addresses_are_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_only_the_names_given_and_the_loopback_ones_are_allowed() -> None:
    assert allowed_hosts("127.0.0.1", 5000) == [
        "127.0.0.1", "127.0.0.1:5000", "localhost", "localhost:5000", "[::1]", "[::1]:5000",
    ]  # fmt: skip
    hosts = allowed_hosts(
        "0.0.0.0", 5001, ["mlflow.team.example", "10.0.0.7:8080", "*.lan", "fd00::1"]
    )
    assert hosts == [
        "0.0.0.0", "0.0.0.0:5001",
        "localhost", "localhost:5001", "127.0.0.1", "127.0.0.1:5001", "[::1]", "[::1]:5001",
        "mlflow.team.example", "mlflow.team.example:5001",
        "10.0.0.7:8080", "*.lan", "[fd00::1]", "[fd00::1]:5001",
    ]  # fmt: skip
    assert cors_origins(hosts, 5001) == [
        "http://0.0.0.0:5001",
        "http://mlflow.team.example:5001",
        "http://10.0.0.7:8080",
        "http://[fd00::1]:5001",
    ]
    # What mlflow server is given (both flags exist from MLflow 3.5 on).
    command = server_command(Served("gs://b/p", "gs://b/p", "gs://b/p/artifacts"), "::", 5001)
    assert command[command.index("--allowed-hosts") + 1] == ",".join(allowed_hosts("::", 5001))
    assert command[command.index("--cors-allowed-origins") + 1] == "http://[::]:5001"


def _status(url: str, host: str | None = None, origin: str | None = None) -> int:
    """The status of a request for the experiment list, with these Host and Origin."""
    headers = {"Content-Type": "application/json"}
    if host:
        headers["Host"] = host
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(
        # /api/: MLflow 3.5 checks the Origin of state-changing requests there only.
        f"{url}/api/2.0/mlflow/experiments/search",
        data=b'{"max_results": 1}',
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_on_every_address_it_warns_and_serves_only_the_names_given(no_config: Path) -> None:
    log = no_config / "ui.log"
    name = "mlflow.team.example"
    process, url = _start_ui(no_config / "store", log, "--host", "0.0.0.0", "--allowed-hosts", name)
    try:
        port = url.rsplit(":", 1)[1]
        text = log.read_text()
        # Before the server starts: who can reach it, with whose credentials, and what to do.
        assert text.index("WARNING: the MLflow UI will listen on every address") < text.index(
            "MLflow UI for"
        )
        warning = " ".join(text.split())
        assert "with YOUR bucket credentials" in warning
        assert "anyone who can reach this port over the network" in warning
        assert f"ssh -L {port}:127.0.0.1:{port}" in warning
        assert f"Host names: 0.0.0.0, localhost, 127.0.0.1, [::1], {name}" in warning
        # The names given are served; any other Host is refused (DNS rebinding).
        assert _status(url) == 200  # 127.0.0.1:port
        assert _status(url, host=f"localhost:{port}") == 200
        assert _status(url, host=f"{name}:{port}") == 200
        assert _status(url, host=f"0.0.0.0:{port}") == 200
        assert _status(url, host=f"evil.example:{port}") == 403
        assert _status(url, host=f"192.168.1.5:{port}") == 403  # MLflow's default takes these
        # The UI opened by a given name may write (its pages send their Origin);
        # another site's page may not.
        assert _status(url, host=f"{name}:{port}", origin=f"http://{name}:{port}") == 200
        assert _status(url, host=f"{name}:{port}", origin="http://evil.example") == 403
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
