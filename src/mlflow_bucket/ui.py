"""``mlflow-bucket ui``: MLflow's own UI and server on localhost, over a bucket store.

One command runs the stock ``mlflow server`` (a subprocess: the engine imports no
MLflow) with the bucket as its tracking and registry store, waits until it answers,
loads the store's state into it, and prints the URL.

Why one worker process: the tracking store folds the bucket's logs into an
in-memory view per process and then only reads what is new. ``mlflow server``
runs uvicorn, and uvicorn with ``--workers 1`` serves from a single process
(the Flask app on a thread pool), so every page reads the same warm view; with
several workers each would load and refresh its own copy of the whole store.

Why artifacts are served directly, not proxied: runs logged by training scripts
already carry their bucket artifact URI (``<store>/artifacts/<experiment>/...``)
and the server reads those with the UI user's own credentials either way. Proxied
mode (``--serve-artifacts``) would only change experiments created through this
server, to ``mlflow-artifacts:/`` locations that scripts logging straight to the
bucket could not resolve. So the server gets ``--no-serve-artifacts`` and the
store's own artifact root as its default.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .commands.common import EXIT_FAILED, EXIT_USAGE, CommandError, resolve
from .storage import split_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# Importing MLflow and its server takes a while on a loaded machine.
STARTUP_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0


class UiError(RuntimeError):
    """The UI cannot start: the message says why and what to do."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Served:
    """The stores the server is started with."""

    uri: str
    registry_uri: str
    artifact_root: str


def resolve_store(uri: str | None) -> Served:
    """The store named on the command line, else the configured one
    (``MLFLOW_TRACKING_URI``, ``MLFLOW_BUCKET_URI``, the project file, ...)."""
    try:
        target = resolve(uri)
    except CommandError as exc:
        raise UiError(str(exc), exc.code) from None
    if target.uri.lower().startswith("memory://"):
        # A memory store lives in one process; the server would see an empty one.
        raise UiError(
            f"{target.uri} lives in one process only; give a gs://, s3:// or folder URI",
            EXIT_USAGE,
        )
    config = target.config
    # A URI on the command line is the registry too; the configured store keeps
    # its configured registry and artifact root.
    configured = target.source != "argument" or _same(target.uri, config.uri)
    registry = (config.registry_uri if configured else None) or target.uri
    root = (config.artifact_root if configured else None) or default_artifact_root(target.uri)
    return Served(uri=target.uri, registry_uri=registry, artifact_root=root)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def default_artifact_root(uri: str) -> str:
    """The tracking store's own default artifact root for ``uri``.

    Kept equal to what the plugin's store uses on its own (``<store>/artifacts``,
    a folder store's as a file:// URI), so experiments created in the UI keep
    their artifacts where scripts do. Computed, not opened: no credentials needed.
    """
    scheme, bucket, root = split_uri(uri)
    if scheme == "file":
        base = Path(root).expanduser().resolve().as_uri()
    else:
        base = f"{scheme}://{bucket}/{root}" if root else f"{scheme}://{bucket}"
    return f"{base}/artifacts"


def server_command(served: Served, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        served.uri,
        "--registry-store-uri",
        served.registry_uri,
        "--no-serve-artifacts",
        "--default-artifact-root",
        served.artifact_root,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        # Tracebacks still go to the log; one line per request would bury them.
        "--uvicorn-opts",
        "--no-access-log",
    ]


def _server_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    # Job execution needs a SQL store; without this the server warns at each start.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # gcsfs otherwise probes the bucket's layout over gRPC, which emulators and
    # plain buckets do not answer (a minute's timeout).
    env.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    return env


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of a server just stopped do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UiError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port",
                EXIT_USAGE,
            ) from None


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port that was free a moment ago (``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def request_json(url: str, body: dict[str, Any] | None = None, timeout: float = 120) -> Any:
    """GET (or, with a body, POST) ``url`` of the server; its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


@dataclass
class UiServer:
    """A running ``mlflow server`` over one store."""

    uri: str
    url: str
    process: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise UiError(
                    f"mlflow server exited with code {self.process.returncode} "
                    "before answering (its output is above)"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5):
                    pass
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise UiError(f"mlflow server did not answer within {timeout:.0f} s") from None
                time.sleep(0.3)

    def load(self) -> list[str]:
        """Read the store's experiments through the server: checks that the store
        answers and leaves the server's view of it loaded. Returns the ids."""
        try:
            doc = request_json(
                f"{self.url}/ajax-api/2.0/mlflow/experiments/search",
                {"max_results": 50000, "view_type": "ALL"},
            )
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise UiError(f"the server cannot read {self.uri}: {exc.code} {detail}") from None
        return [exp["experiment_id"] for exp in doc.get("experiments", [])]

    def warm(self, experiment_ids: list[str]) -> None:
        """Fold each experiment's runs into the server's view before anyone asks."""
        for start in range(0, len(experiment_ids), 100):
            body = {"experiment_ids": experiment_ids[start : start + 100], "max_results": 1}
            try:
                request_json(f"{self.url}/ajax-api/2.0/mlflow/runs/search", body)
            except OSError:
                return  # only a head start; pages load it on demand anyway
        try:
            request_json(f"{self.url}/ajax-api/2.0/mlflow/registered-models/search?max_results=1")
        except OSError:
            return

    def stop(self) -> None:
        """SIGTERM to the server's process group: MLflow's CLI and its uvicorn child
        (older MLflow releases do not pass the signal on); SIGKILL to what still
        runs or listens after STOP_TIMEOUT."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)
        # An orphaned uvicorn is no longer our child: watch its socket instead.
        while self._listening() and time.monotonic() < deadline:
            time.sleep(0.2)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _listening(self) -> bool:
        parts = urllib.parse.urlsplit(self.url)
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=1):
                return True
        except OSError:
            return False


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, the server gets SIGTERM if this process dies without stopping it
    (killed with SIGKILL): it is in a session of its own, so nothing else would."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Looked up here: the child, between fork and exec, only makes the call.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_signal


@contextmanager
def serve(
    served: Served,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | None = None,
) -> Iterator[UiServer]:
    """A started, loaded ``mlflow server`` over ``served``; stopped on exit."""
    if port == 0:
        port = free_port(host)
    _check_port(host, port)
    command = server_command(served, host, port)
    # A session of its own: Ctrl-C reaches this process only, which then stops
    # the server with one SIGTERM (uvicorn given SIGINT by the terminal and again
    # by mlflow's CLI would force-quit with a traceback).
    process = subprocess.Popen(
        command,
        env=_server_env(env),
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
    )
    server = UiServer(uri=served.uri, url=f"http://{host}:{port}", process=process)
    try:
        server.wait_ready()
        ids = server.load()
        # The first page needs only the experiment list; runs load meanwhile.
        threading.Thread(target=server.warm, args=(ids,), name="ui-warm", daemon=True).start()
        yield server
    finally:
        server.stop()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM stops the command as Ctrl-C does, so the server is stopped too."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_until_stopped(server: UiServer) -> int:
    """Block until Ctrl-C or SIGTERM (0), or until the server exits by itself (1)."""
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    print(f"mlflow server exited with code {server.process.returncode}", file=sys.stderr)
    return 1


def run(uri: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """The command: serve until Ctrl-C. Exit code 1 with a message if it cannot."""
    try:
        with interruptible():
            served = resolve_store(uri)
            print(f"Starting the MLflow UI on {served.uri} ...", flush=True)
            with serve(served, host, port) as server:
                print(f"MLflow UI for {served.uri}: {server.url}", flush=True)
                print("Press Ctrl-C to stop.", flush=True)
                return wait_until_stopped(server)
    except UiError as exc:
        print(f"mlflow-bucket ui: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
