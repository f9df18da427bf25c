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

Who may reach it: the server reads and writes the store with the credentials
of whoever runs the command, and has no login. On 127.0.0.1 (the default)
that is this machine's users only. On any other address (``--host 0.0.0.0``)
it is anyone who can reach the port, so the command says so before it
starts. Either way MLflow's allowed-hosts list is set to the names given
(``--host``, ``--allowed-hosts``) and the loopback names, so a page of
another site (DNS rebinding) gets a 403; and the CORS origins to the same
names, so the UI's own writes work when it is opened by one of them.
"""

from __future__ import annotations

import ctypes
import ipaddress
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .commands.common import EXIT_FAILED, EXIT_USAGE, CommandError, resolve
from .redact import redact
from .storage import split_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# Importing MLflow and its server takes a while on a loaded machine.
STARTUP_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0
# The Host names a server on any address accepts besides those given.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


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


# -- who may reach the server ----------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` is reachable from this machine only:
    127.0.0.0/8, ::1, ``localhost``, or a name that resolves only to those."""
    if host.lower() in ("localhost", "localhost."):
        return True
    address = _ip(host)
    if address is not None:
        return address.is_loopback
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in found
    )


def _is_wildcard(host: str) -> bool:
    address = _ip(host)
    return address is not None and address.is_unspecified


def _host_name(host: str) -> str:
    """``host`` as a Host header names it: an IPv6 address in brackets."""
    address = _ip(host)
    return f"[{address}]" if address is not None and address.version == 6 else host.lower()


def _has_port(name: str) -> bool:
    """``name:port`` or ``[v6]:port`` (a bare IPv6 address has colons too)."""
    if name.startswith("["):
        return "]:" in name
    return name.count(":") == 1


def allowed_hosts(host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The Host headers the server accepts: ``host`` and the names in ``extra``,
    each alone and with ``:port``, and the loopback names. A name with a
    port or a ``*`` (MLflow matches those as patterns) is taken as it is."""
    names: list[str] = []
    for name in (host, *LOOPBACK_NAMES, *extra):
        name = name.strip()
        if not name:
            continue
        bare = _host_name(name)
        forms = [bare] if "*" in bare or _has_port(bare) else [bare, f"{bare}:{port}"]
        names.extend(form for form in forms if form not in names)
    return names


def cors_origins(hosts: Sequence[str], port: int) -> list[str]:
    """The origins the UI's pages have when opened by one of ``hosts`` (what
    allowed_hosts gives): MLflow refuses a write whose Origin is neither a
    loopback one nor listed, and a browser sends the page's origin with each."""
    origins: list[str] = []
    for name in hosts:
        bare = name.rsplit(":", 1)[0] if _has_port(name) else name
        if "*" in name or bare in LOOPBACK_NAMES:  # MLflow takes loopback origins anyway
            continue
        origin = f"http://{name}" if _has_port(name) else f"http://{name}:{port}"
        if origin not in origins:
            origins.append(origin)
    return origins


def exposure_warning(served: Served, host: str, port: int, hosts: Sequence[str]) -> str:
    """What ``ui`` says before it starts on an address other machines can reach."""
    where = "every address of this machine" if _is_wildcard(host) else host
    names = ", ".join(h for h in hosts if not h.endswith(f":{port}"))
    return (
        f"WARNING: the MLflow UI will listen on {where} (port {port}), not on this "
        "machine's loopback address only.\n"
        f"It serves the store {redact(served.uri)} with YOUR bucket credentials and asks "
        "no one for a login: anyone who can reach this port over the network can read "
        "every run, metric and artifact in it, and create, change or delete experiments, "
        "runs and models there, as you.\n"
        f"Requests are accepted only with these Host names: {names} (name more with "
        "--allowed-hosts). That stops other web sites' pages in a browser (DNS "
        "rebinding); it does not stop anyone on the network, who can send any Host.\n"
        "To restrict it: run it on 127.0.0.1 (the default) and let others reach it "
        f"through an SSH tunnel (ssh -L {port}:127.0.0.1:{port} this-machine), or keep "
        "this port behind a firewall or an authenticating reverse proxy; or let each "
        "person run mlflow-bucket ui with their own credentials."
    )


def server_command(
    served: Served, host: str, port: int, allowed: Sequence[str] | None = None
) -> list[str]:
    hosts = list(allowed) if allowed is not None else allowed_hosts(host, port)
    origins = cors_origins(hosts, port)
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
        # Only these Host headers are served (MLflow's default also takes any
        # private address); /health answers any.
        "--allowed-hosts",
        ",".join(hosts),
        *(["--cors-allowed-origins", ",".join(origins)] if origins else []),
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


def _family(host: str) -> socket.AddressFamily:
    address = _ip(host)
    return socket.AF_INET6 if address is not None and address.version == 6 else socket.AF_INET


def _check_port(host: str, port: int) -> None:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
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
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
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
            raise UiError(
                f"the server cannot read {redact(self.uri)}: {exc.code} {redact(detail)}"
            ) from None
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


def local_url(host: str, port: int) -> str:
    """How this machine reaches a server listening on ``host``: a wildcard
    address (0.0.0.0, ::) through the loopback one."""
    address = _ip(host)
    if address is not None and address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    return f"http://{_host_name(host)}:{port}"


@contextmanager
def serve(
    served: Served,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | None = None,
    extra_hosts: Sequence[str] = (),
    announce: Callable[[list[str], int], None] | None = None,
) -> Iterator[UiServer]:
    """A started, loaded ``mlflow server`` over ``served``; stopped on exit.

    ``extra_hosts``: Host names accepted besides ``host`` and the loopback
    ones. ``announce(hosts, port)`` is called once the port is known, before
    the server starts (the command's warning)."""
    if port == 0:
        port = free_port(host)
    _check_port(host, port)
    hosts = allowed_hosts(host, port, extra_hosts)
    if announce is not None:
        announce(hosts, port)
    command = server_command(served, host, port, hosts)
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
    server = UiServer(uri=served.uri, url=local_url(host, port), process=process)
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


def run(
    uri: str | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    extra_hosts: Sequence[str] = (),
) -> int:
    """The command: serve until Ctrl-C. Exit code 1 with a message if it cannot."""
    try:
        with interruptible():
            served = resolve_store(uri)
            shown = redact(served.uri)

            def announce(hosts: list[str], chosen_port: int) -> None:
                if not is_loopback(host):
                    warning = exposure_warning(served, host, chosen_port, hosts)
                    print(f"\n{warning}\n", file=sys.stderr, flush=True)

            print(f"Starting the MLflow UI on {shown} ...", flush=True)
            with serve(served, host, port, extra_hosts=extra_hosts, announce=announce) as server:
                print(f"MLflow UI for {shown}: {server.url}", flush=True)
                print("Press Ctrl-C to stop.", flush=True)
                return wait_until_stopped(server)
    except UiError as exc:
        print(f"mlflow-bucket ui: error: {redact(str(exc))}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
