"""Run a test server as a subprocess: start it, wait until it listens, stop it.

Servers run in their own process so they share neither memory nor the GIL with the code under
test. Both sides of the handshake live here:

* child side: :func:`announce_ready` prints one line with the bound port once the socket
  listens (so servers can bind port 0 and there is no free-port race), and
  :func:`exit_with_parent` makes the child exit if the test process dies without stopping it;
* parent side: :class:`ServerProcess` spawns ``python -m <module> ...``, waits (bounded) for
  the ready line, or, for servers that do not announce, for the given port to accept
  connections, and raises :class:`ServerStartError` with the child's stderr if it does not.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "READY_MARKER",
    "ServerProcess",
    "ServerStartError",
    "announce_ready",
    "exit_with_parent",
    "free_port",
    "wait_for_port",
]

READY_MARKER = "MLFLOW_BUCKET_SERVER_READY"
_READY_RE = re.compile(rf"^{READY_MARKER} host=(\S+) port=(\d+)$", re.MULTILINE)
# Makes the child importable even when the parent found the package through sys.path tricks
# (pytest rootdir insertion, PYTHONPATH set only in-process) rather than an installation.
_SRC_DIR = Path(__file__).resolve().parents[2]
_STDERR_TAIL_CHARS = 4000

_live: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


class ServerStartError(RuntimeError):
    """A server subprocess exited or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (racy: prefer servers binding port 0 and announcing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` accepted a TCP connection within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def announce_ready(host: str, port: int) -> None:
    """Child side: tell the parent the server listens on ``host:port`` (call after bind)."""
    sys.stdout.write(f"{READY_MARKER} host={host} port={port}\n")
    sys.stdout.flush()


def exit_with_parent(poll_seconds: float = 0.5) -> None:
    """Child side: exit as soon as the process that spawned us is gone.

    A test run killed with SIGKILL never calls ``stop()``; without this its servers would
    linger, holding ports and memory.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class ServerProcess:
    """``python -m module *args`` as a server subprocess.

    The child's stdout and stderr go to temporary files, not pipes: nobody reads a pipe while
    the server runs, and a full pipe would block the server on its next log line.
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.module = module
        self.args = list(args)
        self.env = dict(env or {})
        self.name = name or module
        self.host: str | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._stdout_path: Path | None = None
        self._stderr_path: Path | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(
        self,
        *,
        timeout: float = 30.0,
        host: str = "127.0.0.1",
        port: int | None = None,
        ready_url: str | None = None,
    ) -> int:
        """Spawn the server and return its port once it is ready.

        Ready means: the child printed the :func:`announce_ready` line, or (if ``port`` is
        given) ``host:port`` accepts connections; then, if ``ready_url`` is given, that URL
        answered with any HTTP status. Raises :class:`ServerStartError` (with the child's
        stderr) if the child exits first or ``timeout`` passes; the child is killed then.
        """
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="mlflow-bucket-server-")
        self._stdout_path = Path(self._tmpdir.name, "stdout")
        self._stderr_path = Path(self._tmpdir.name, "stderr")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_SRC_DIR), env.get("PYTHONPATH", "")) if p
        )
        argv = [sys.executable, "-m", self.module, *self.args]
        with open(self._stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env
            )
        _live.add(self)
        try:
            self.port = self._wait_ready(timeout, host, port, ready_url)
        except BaseException:
            self.stop()
            raise
        self.host = host
        return self.port

    def _wait_ready(
        self, timeout: float, host: str, port: int | None, ready_url: str | None
    ) -> int:
        assert self._proc is not None and self._stdout_path is not None
        deadline = time.monotonic() + timeout
        found: int | None = None
        while found is None:
            match = _READY_RE.search(self._stdout_path.read_text(errors="replace"))
            if match:
                found = int(match.group(2))
            elif port and wait_for_port(host, port, 0):
                found = port
            elif self._proc.poll() is not None:
                raise self._error(f"exited with status {self._proc.returncode} before ready")
            elif time.monotonic() >= deadline:
                raise self._error(f"not ready after {timeout:.0f} s")
            else:
                time.sleep(0.02)
        while ready_url is not None:
            url = ready_url.format(host=host, port=found)
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # any HTTP answer means it serves
            except OSError:
                if self._proc.poll() is not None:
                    raise self._error(
                        f"exited with status {self._proc.returncode} before ready"
                    ) from None
                if time.monotonic() >= deadline:
                    raise self._error(f"{url} not answering after {timeout:.0f} s") from None
                time.sleep(0.05)
        return found

    def _error(self, what: str) -> ServerStartError:
        cmd = " ".join([os.path.basename(sys.executable), "-m", self.module, *self.args])
        return ServerStartError(
            f"{self.name} ({cmd}) {what}.\n--- its stderr (tail) ---\n{self.stderr_tail()}"
        )

    def stderr_tail(self, chars: int = _STDERR_TAIL_CHARS) -> str:
        """The end of the child's stderr, for error messages."""
        if self._stderr_path is None:
            return ""
        try:
            text = self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:] if text.strip() else "(empty)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            _live.discard(self)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self.port = None


@atexit.register
def _stop_leftovers() -> None:
    # Fixtures stop their servers; this catches interrupted runs and forgotten stop() calls.
    for server in list(_live):
        server.stop(timeout=2)
