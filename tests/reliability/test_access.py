"""Read-only credentials browse and cannot write; a writer's secret never shows.

The S3 emulator runs with moto's IAM enforcement, and the reader and writer
users get the policies of terraform/modules/s3-store/iam.tf (built by
tests/test_doctor.py's helpers, so a change to the module shows here).
A writer fills the store; a reader browses it through MlflowClient and
through a real ``mlflow server`` process, and its writes are refused with
an error naming the object and the 403; nothing it tried lands in the
bucket. Every log record (all loggers, DEBUG), every exception text and the
server's output are searched for the writer's and the reader's secret keys.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from reliability_helpers import fresh

from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.s3_emulator import S3Emulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlflow_bucket_plugins.mlflow_compat import forget_artifact_repositories
from test_doctor import BUCKET, PROJECT, SETUP_ACTIONS, _credentials_for

pytestmark = [pytest.mark.emulator, pytest.mark.reliability]

URI = f"s3://{BUCKET}/{PROJECT}"


@pytest.fixture(scope="module")
def iam() -> Iterator[tuple[S3Emulator, dict[str, dict[str, Any]]]]:
    with S3Emulator(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}) as emulator:
        creds = {group: _credentials_for(emulator, group) for group in ("reader", "writer")}
        yield emulator, creds


def _env(emulator: S3Emulator, creds: dict[str, Any]) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": creds["key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _as(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], state: Path) -> None:
    """This process becomes a new process with these credentials."""
    from mlflow_bucket_plugins import artifacts

    fresh()
    # MLflow keeps each run's artifact repository, and they share one store
    # per bucket, for the process's life (a process does not change
    # credentials); a new process has none.
    forget_artifact_repositories()
    with artifacts._STORES_LOCK:
        for store in artifacts._STORES.values():
            store.close()
        artifacts._STORES.clear()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(state / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(state / "cache"))


def _keys(emulator: S3Emulator, writer: dict[str, Any]) -> list[str]:
    """Every object under the project (listed with the writer's role)."""
    store = open_store(
        URI,
        endpoint_url=emulator.endpoint,
        key=writer["key"],
        secret=writer["secret"],
        client_kwargs={"region_name": "us-east-1"},
    )
    try:
        return sorted(info.key for info in store.list_objects(""))
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, method: str = "GET", body: Any = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def filled(
    iam: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> dict[str, Any]:
    """The writer fills the store: runs, points, an artifact, a registered model."""
    emulator, creds = iam
    caplog.set_level(logging.DEBUG)
    _as(monkeypatch, _env(emulator, creds["writer"]), tmp_path / "writer")
    client = MlflowClient(tracking_uri=URI, registry_uri=URI)
    exp = client.get_experiment_by_name("team")
    eid = exp.experiment_id if exp else client.create_experiment("team")
    run_id = client.create_run(eid, run_name="trained").info.run_id
    for step in range(5):
        client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
    client.log_param(run_id, "lr", "0.1")
    artifact = tmp_path / "model.txt"
    artifact.write_text("weights")
    client.log_artifact(run_id, str(artifact))
    client.set_terminated(run_id)
    name = f"model-{run_id[:8]}"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    # The writer's own errors: a prefix its role does not cover.
    errors = []
    try:
        MlflowClient(f"s3://{BUCKET}/another-project").create_experiment("x")
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    fresh()
    return {"eid": eid, "run_id": run_id, "model": name, "errors": errors}


def test_reader_browses_and_cannot_write(
    iam: Any,
    filled: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    record_figures: Any,
) -> None:
    emulator, creds = iam
    before = _keys(emulator, creds["writer"])
    _as(monkeypatch, _env(emulator, creds["reader"]), tmp_path / "reader")
    client = MlflowClient(tracking_uri=URI, registry_uri=URI)
    run_id = filled["run_id"]

    # Browse: what the UI shows.
    runs = client.search_runs([filled["eid"]])
    assert run_id in {r.info.run_id for r in runs}
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(5))
    assert [f.path for f in client.list_artifacts(run_id)] == ["model.txt"]
    got = client.download_artifacts(run_id, "model.txt", str(tmp_path))
    assert Path(got).read_text() == "weights"
    assert filled["model"] in {m.name for m in client.search_registered_models()}

    # Write: refused, naming the object and the 403, and nothing lands.
    new_file = tmp_path / "other.txt"
    new_file.write_text("not weights")
    refused = []
    for what, call in [
        ("create_experiment", lambda: client.create_experiment("nope")),
        ("create_registered_model", lambda: client.create_registered_model("nope")),
        ("log_artifact", lambda: client.log_artifact(run_id, str(new_file))),
    ]:
        try:
            call()
        except Exception as exc:
            text = str(exc)
            assert "403" in text or "Access Denied" in text, (what, text)
            refused.append((what, type(exc).__name__, text[:200]))
        else:
            raise AssertionError(f"{what} with read-only credentials did not fail")
    # Logging calls are spooled (they never wait on the bucket); the upload
    # is refused, said in the log, and retried: nothing lands.
    client.log_metric(run_id, "loss", 9.0, step=99)
    assert not client._tracking_client.store.flush(3)
    assert any("403" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records), (
        "a refused upload must be logged"
    )
    fresh()
    assert _keys(emulator, creds["writer"]) == before
    record_figures(kind="read-only credentials", refused=[r[:2] for r in refused])


def test_a_refused_write_is_an_mlflow_error(
    iam: Any, filled: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, creds = iam
    _as(monkeypatch, _env(emulator, creds["reader"]), tmp_path / "reader")
    client = MlflowClient(tracking_uri=URI, registry_uri=URI)
    with pytest.raises(MlflowException) as exc:
        client.create_experiment("nope")
    assert exc.value.error_code == "PERMISSION_DENIED"
    assert "403" in exc.value.message  # the bucket's answer, with the object's URL
    with pytest.raises(MlflowException) as exc:
        client.create_registered_model("nope")
    assert exc.value.error_code == "PERMISSION_DENIED"


@pytest.fixture
def reader_server(iam: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` on the store, with the reader's credentials only."""
    emulator, creds = iam
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith(("AWS_", "MLFLOW_BUCKET_"))
    }
    env.update(_env(emulator, creds["reader"]))
    state = Path(tempfile.mkdtemp(dir=tmp_path))
    env.update(
        MLFLOW_BUCKET_SPOOL_DIR=str(state / "spool"),
        MLFLOW_BUCKET_CACHE_DIR=str(state / "cache"),
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                URI,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300  # a loaded machine
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=5):
                        break
                except OSError:
                    assert proc.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "mlflow server did not start"
                    time.sleep(0.3)
            yield url, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_reader_browses_through_the_mlflow_server_and_no_secret_leaks(
    iam: Any,
    filled: dict[str, Any],
    reader_server: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
    record_figures: Any,
) -> None:
    _, creds = iam
    url, log_path = reader_server
    api = f"{url}/ajax-api/2.0/mlflow"
    run_id, eid = filled["run_id"], filled["eid"]
    browse = {
        "experiments/search": _call(f"{api}/experiments/search", "POST", {"max_results": 10}),
        "runs/search": _call(f"{api}/runs/search", "POST", {"experiment_ids": [eid]}),
        "runs/get": _call(f"{api}/runs/get?run_id={run_id}"),
        "metrics/get-history": _call(f"{api}/metrics/get-history?run_id={run_id}&metric_key=loss"),
        "artifacts/list": _call(f"{api}/artifacts/list?run_id={run_id}"),
        "registered-models/search": _call(f"{api}/registered-models/search"),
    }
    for endpoint, (status, body) in browse.items():
        assert status == 200, (endpoint, body[:500])
    assert run_id in browse["runs/search"][1]
    assert len(json.loads(browse["metrics/get-history"][1])["metrics"]) == 5
    assert filled["model"] in browse["registered-models/search"][1]

    # A write through the server is refused, never done.
    status, body = _call(f"{api}/experiments/create", "POST", {"name": "via-server"})
    assert status >= 400, body
    listed = _call(f"{api}/experiments/search", "POST", {"max_results": 100})[1]
    assert "via-server" not in listed

    # No secret anywhere: log records, exception texts, the server's output.
    seen = "\n".join(
        [
            caplog.text,
            *(r.getMessage() for r in caplog.records),
            *filled["errors"],
            log_path.read_text(errors="replace"),
            *(b for _, b in browse.values()),
            body,
        ]
    )
    assert filled["errors"], "the writer's refused write raised nothing"
    for group in ("writer", "reader"):
        assert creds[group]["secret"] not in seen, f"the {group}'s secret key leaked"
    record_figures(
        kind="server with read-only credentials",
        endpoints_browsed=len(browse),
        write_status=status,
        log_chars_searched=len(seen),
        secrets_found=0,
    )
