"""``mlflow-bucket demo``: the README's main command.

With no URI it starts a local GCS emulator with an empty bucket, runs the
example training script (``examples/`` of a checkout) into it as plain
MLflow code, then starts MLflow's UI over that bucket (``mlflow-bucket ui``)
and prints its URL, until Ctrl-C. Given a URI (gs://..., s3://..., a folder)
it does the same against that store, with the machine's own credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .redact import redact
from .ui import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Served,
    UiError,
    default_artifact_root,
    free_port,
    interruptible,
    request_json,
    resolve_store,
    serve,
    wait_until_stopped,
)

DEMO_BUCKET = "mlflow-demo"
DEMO_PREFIX = "team"
# The training script the demo runs: several runs (a sweep's trials under its
# parent run) with metric curves, what a team's bucket fills with.
EXAMPLE_SCRIPT = "sweep.py"
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
SCRIPT_TIMEOUT = 900


class DemoError(RuntimeError):
    pass


@contextmanager
def _emulated_store(scratch: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh bucket on a local GCS emulator, and the environment that reaches it."""
    from .testing.gcs_emulator import GcsEmulator

    with GcsEmulator() as emulator:
        emulator.create_bucket(DEMO_BUCKET)
        env = {
            # The cloud SDKs' own setting for an emulator (anonymous credentials).
            "STORAGE_EMULATOR_HOST": emulator.endpoint,
            "GOOGLE_CLOUD_PROJECT": "demo",
            # gcsfs would otherwise probe the emulator over gRPC for a minute.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            # The bucket dies with the emulator; so must the spool and the object
            # cache (the next demo's bucket has the same name and keys).
            "MLFLOW_BUCKET_SPOOL_DIR": str(scratch / "spool"),
            "MLFLOW_BUCKET_CACHE_DIR": str(scratch / "cache"),
        }
        print(f"Started a local GCS emulator at {emulator.endpoint}", flush=True)
        yield f"gs://{DEMO_BUCKET}/{DEMO_PREFIX}", env


def _run_example(served: Served, env: dict[str, str]) -> None:
    script = EXAMPLES_DIR / EXAMPLE_SCRIPT
    if not script.is_file():
        raise DemoError(
            f"{script} not found: the demo runs the examples of a checkout of mlflow-bucket"
        )
    print(f"Running examples/{EXAMPLE_SCRIPT} into {redact(served.uri)} ...", flush=True)
    child_env = {
        **os.environ,
        **env,
        "MLFLOW_TRACKING_URI": served.uri,
        "MLFLOW_REGISTRY_URI": served.registry_uri,
    }
    try:
        done = subprocess.run(
            [sys.executable, str(script)], env=child_env, timeout=SCRIPT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise DemoError(f"examples/{EXAMPLE_SCRIPT} did not finish in {SCRIPT_TIMEOUT} s") from None
    if done.returncode != 0:
        raise DemoError(f"examples/{EXAMPLE_SCRIPT} failed with exit code {done.returncode}")


def _pick_port(host: str, port: int) -> int:
    """``port``, or any free one if the default is taken (the demo should just run)."""
    if port == DEFAULT_PORT:
        import socket

        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return free_port(host)
    return port


def _summary(url: str) -> list[str]:
    """What the UI's server sees: each experiment and its number of runs."""
    lines = []
    experiments = request_json(
        f"{url}/ajax-api/2.0/mlflow/experiments/search", {"max_results": 1000}
    )
    for exp in experiments.get("experiments", []):
        body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
        runs = request_json(f"{url}/ajax-api/2.0/mlflow/runs/search", body).get("runs", [])
        lines.append(f"  {exp['name']}: {len(runs)} runs")
    return lines


def _demo(served: Served, env: dict[str, str], host: str, port: int, wait: bool) -> int:
    _run_example(served, env)
    print("Starting the MLflow UI ...", flush=True)
    with serve(served, host, _pick_port(host, port), env=env) as server:
        print(f"The UI's server sees, in {redact(served.uri)}:", flush=True)
        for line in _summary(server.url):
            print(line, flush=True)
        print(f"MLflow UI for {redact(served.uri)}: {server.url}", flush=True)
        if not wait:
            return 0
        print("Press Ctrl-C to stop.", flush=True)
        return wait_until_stopped(server)


def run(
    uri: str | None, wait: bool = True, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> int:
    try:
        with interruptible():
            if uri is not None:
                return _demo(resolve_store(uri), {}, host, port, wait)
            with (
                tempfile.TemporaryDirectory(prefix="mlflow-bucket-demo-") as scratch,
                _emulated_store(Path(scratch)) as (store_uri, env),
            ):
                served = Served(store_uri, store_uri, default_artifact_root(store_uri))
                return _demo(served, env, host, port, wait)
    except UiError as exc:
        print(f"mlflow-bucket demo: error: {redact(str(exc))}", file=sys.stderr)
        return exc.code
    except (DemoError, urllib.error.URLError, OSError) as exc:
        print(f"mlflow-bucket demo: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
