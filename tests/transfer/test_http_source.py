"""A tracking server (``mlflow server`` over an SQLite file) as the source of an import."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_round_trip import run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(sqlite_source: tuple[str, dict[str, Any]], tmp_path: Path) -> Iterator[str]:
    """The filled SQLite store behind MLflow's own tracking server; its URL."""
    source, _ = sqlite_source
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            source,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_tracking_server_source(
    server: str, sqlite_source: tuple[str, dict[str, Any]], bucket_uri: str
) -> None:
    source, _ = sqlite_source
    assert run("import", server, "--to", bucket_uri) == 0
    assert run("verify", server, bucket_uri, "--ids") == 0
    assert run("verify", source, bucket_uri, "--ids") == 0
