"""`mlflow server` and `mlflow ui` as subprocesses, started as a user types them.

Shared by the tests that reach MLflow's server through its front door (the route walk,
the registry pages, the stock commands on a bucket).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

# How long a loaded machine may take to start `mlflow server` (4 uvicorn workers
# each importing MLflow, on 2 cores shared with others).
STARTUP_SECONDS = 300


@dataclass
class Server:
    """One `mlflow server` process, its URL, its log and the ids made on it."""

    label: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    ids: dict[str, str] = field(default_factory=dict)

    def log_text(self, start: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_command() -> list[str]:
    """`mlflow` of the test's own environment, as a user of that venv types it."""
    script = Path(sys.executable).parent / "mlflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


def clean_env(home: Path) -> dict[str, str]:
    """The test's environment without MLflow's or the plugin's settings leaking in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "_MLFLOW_", "STORAGE_EMULATOR", "AWS_", "GOOGLE_"))
    }
    # The assistant's routes write their config and sessions under ~/.mlflow.
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        MLFLOW_BUCKET_USER_CONFIG="",
        MLFLOW_BUCKET_SPOOL_DIR=str(home / "spool"),
        MLFLOW_BUCKET_CACHE_DIR=str(home / "cache"),
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
        # The gateway's model list otherwise fetches MLflow's model catalog from the
        # internet, with no timeout: offline, the call hangs. The bundled copy answers.
        MLFLOW_MODEL_CATALOG_URI="",
    )
    return env


def start_server(
    label: str,
    uri: str,
    folder: Path,
    env: dict[str, str],
    command: str = "server",
    extra: Sequence[str] = (),
) -> Server:
    """`mlflow <command> --backend-store-uri URI --host 127.0.0.1 --port N [extra]` in
    ``folder`` (its working directory), logging to ``folder/server.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *mlflow_command(),
                command,
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *extra,
            ],
            cwd=folder,  # the default ./mlartifacts lands here
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group: MLflow 3.5's CLI does not pass SIGTERM on to
            # uvicorn, so the group is what gets stopped.
            start_new_session=True,
        )
    return Server(label, process, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            if requests.get(f"{server.url}/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"mlflow server on {server.label} did not start "
                f"(exit {server.process.poll()}):\n{server.log_text()[-5000:]}"
            )
        time.sleep(0.5)


def stop_server(server: Server) -> None:
    if server.process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(server.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running_server(
    label: str,
    uri: str,
    folder: Path,
    env: dict[str, str],
    command: str = "server",
    extra: Sequence[str] = (),
) -> Iterator[Server]:
    """A started and ready server, stopped (its whole process group) at the end."""
    server = start_server(label, uri, folder, env, command, extra)
    try:
        wait_ready(server)
        yield server
    finally:
        stop_server(server)
