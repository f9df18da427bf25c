"""Read-only credentials browse and cannot write; no credential ever shows.

The S3 emulator runs with moto's IAM enforcement, and the reader and writer
roles get the policies of terraform/modules/s3-store/iam.tf (built by
tests/test_doctor.py's helpers, so a change to the module shows here). Each
works with session credentials from STS AssumeRole, as on a laptop with SSO
or on CI: an access key id, a secret key and a session token
(``AWS_SESSION_TOKEN``), which moto checks on every request.
A writer fills the store; a reader browses it through MlflowClient and
through a real ``mlflow server`` process, and its writes are refused with
an error naming the object and the 403; nothing it tried lands in the
bucket. Every log record (all loggers, DEBUG), every exception text and the
server's output (with DEBUG logging) are searched for every credential of
both.

Then every kind of credential is planted at once (AWS keys and session
token; a GCS service-account key whose token endpoint hands out a planted
access token; a presigned URL and ``user:password@`` in URL-valued
settings) and every command a user runs (``config``, ``doctor``, ``status``,
a training script logging a run and an artifact, ``ui`` and its server),
with DEBUG logging on the root logger as ``logging.basicConfig(level=DEBUG)``
gives, has all its output searched for each of them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from reliability_helpers import fresh

from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.gcs_emulator import GcsEmulator
from mlflow_bucket.testing.s3_emulator import S3Emulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlflow_bucket_plugins.mlflow_compat import forget_artifact_repositories
from test_doctor import BUCKET, PROJECT, SETUP_ACTIONS, _credentials_for

pytestmark = [pytest.mark.emulator, pytest.mark.reliability]

URI = f"s3://{BUCKET}/{PROJECT}"
# moto's default account.
ACCOUNT = "123456789012"
# Set-up actions after test_doctor's (users and their policies): a role per
# group with the group's policy (CreateRole, AttachRolePolicy) and one
# AssumeRole. moto checks every request after these.
ROLE_ACTIONS = 3 * 2


def _session_credentials(emulator: S3Emulator, group: str) -> dict[str, Any]:
    """STS credentials of a role with ``group``'s module policy."""
    import boto3

    admin = {
        "endpoint_url": emulator.endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam = boto3.client("iam", **admin)
    role = iam.create_role(RoleName=f"{group}-role", AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(
        RoleName=f"{group}-role", PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/{group}"
    )
    found = boto3.client("sts", **admin).assume_role(
        RoleArn=role["Role"]["Arn"], RoleSessionName=f"{group}-session"
    )["Credentials"]
    return {
        "key": found["AccessKeyId"],
        "secret": found["SecretAccessKey"],
        "token": found["SessionToken"],
    }


@pytest.fixture(scope="module")
def iam() -> Iterator[tuple[S3Emulator, dict[str, dict[str, Any]]]]:
    actions = SETUP_ACTIONS + ROLE_ACTIONS
    with S3Emulator(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(actions)}) as emulator:
        for group in ("reader", "writer"):  # the policies the roles get
            _credentials_for(emulator, group)
        creds = {group: _session_credentials(emulator, group) for group in ("reader", "writer")}
        yield emulator, creds


def _env(emulator: S3Emulator, creds: dict[str, Any]) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": creds["key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret"],
        "AWS_SESSION_TOKEN": creds["token"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _aws_secrets(creds: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every credential of every group, by name."""
    return {
        f"{group} {what}": creds[group][field_]
        for group in creds
        for what, field_ in (
            ("access key id", "key"),
            ("secret access key", "secret"),
            ("session token", "token"),
        )
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
    # A developer's profile would win over the variables; the session token
    # is among them (set, never removed: it is what must not leak).
    for name in ("AWS_PROFILE", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(state / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(state / "cache"))


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record captured while the fixtures ran and in the test, as a handler
    prints them (tracebacks too)."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    return "\n".join(formatter.format(record) for record in records)


def _keys(emulator: S3Emulator, writer: dict[str, Any]) -> list[str]:
    """Every object under the project (listed with the writer's role)."""
    store = open_store(
        URI,
        endpoint_url=emulator.endpoint,
        key=writer["key"],
        secret=writer["secret"],
        token=writer["token"],
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
    logged = _logged(caplog)
    assert "X-Amz-Security-Token" in logged, "DEBUG records were not captured"
    assert_no_leak(
        {"log records (DEBUG)": logged, "errors": "\n".join(r[2] for r in refused)},
        _aws_secrets(creds),
    )
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
    """``mlflow server`` on the store, with the reader's credentials only and
    DEBUG logging (botocore then logs every request's headers)."""
    emulator, creds = iam
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_BUCKET_"))}
    env.update(_env(emulator, creds["reader"]))
    env.update(debug_logging(tmp_path))
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

    # No credential anywhere: log records, exception texts, the server's output.
    server_log = log_path.read_text(errors="replace")
    # This process's records: the writer's (the fixture's) and the reader's.
    records = _logged(caplog)
    outputs = {
        "this process's log records (DEBUG)": records,
        "the writer's errors": "\n".join(filled["errors"]),
        "the server's output (DEBUG)": server_log,
        "the server's answers": "\n".join([*(b for _, b in browse.values()), body]),
    }
    assert filled["errors"], "the writer's refused write raised nothing"
    # The logs searched are the ones that would hold them: botocore's request dumps.
    assert "X-Amz-Security-Token" in server_log, "DEBUG logging did not reach the server"
    assert "X-Amz-Security-Token" in records, "DEBUG records were not captured"
    assert_no_leak(outputs, _aws_secrets(creds))
    record_figures(
        kind="server with read-only credentials",
        endpoints_browsed=len(browse),
        write_status=status,
        log_chars_searched=sum(len(text) for text in outputs.values()),
        secrets_found=0,
    )


# -- every credential, every output -----------------------------------------------------

# What a user's `logging.basicConfig(level=DEBUG)` does, in every Python
# process started with it (the commands, the script, mlflow server). The
# google logger stops propagating unless configured (google.auth._helpers):
# a user who wants its DEBUG records sets its level too.
SITECUSTOMIZE = """\
import logging
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("google").setLevel(logging.DEBUG)
"""


def debug_logging(tmp_path: Path) -> dict[str, str]:
    """Variables that give every Python process started with them DEBUG logging."""
    shim = tmp_path / "debug-logging"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def _random(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def assert_no_leak(outputs: Mapping[str, str], planted: Mapping[str, str]) -> None:
    """No planted value, nor its URL-quoted form, nor its first 24 characters
    (a truncated copy), in any output. The failure names the output and the
    credential and shows the lines, with the value itself masked."""
    leaks = []
    for what, value in planted.items():
        forms = {value, quote(value, safe=""), value[:24]}
        for where, text in outputs.items():
            found = [form for form in forms if form and form in text]
            if not found:
                continue
            lines = [
                line.replace(value, f"<{what}>").replace(value[:24], f"<{what}>")[:300]
                for line in text.splitlines()
                if any(form in line for form in found)
            ]
            leaks.append(f"{what} in {where}:\n  " + "\n  ".join(lines[:3]))
    assert not leaks, "planted credentials in the output:\n" + "\n".join(leaks)


@dataclass
class Bench:
    """A project folder, the environment of a user's shell, and what was planted."""

    project: Path
    env: dict[str, str]
    planted: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)

    def run(self, name: str, *args: str, code: int | None = 0, **env: str) -> str:
        """Run ``args`` (a command line) here; its stdout and stderr, recorded as ``name``."""
        done = subprocess.run(
            args,
            cwd=self.project,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        text = done.stdout + done.stderr
        self.outputs[name] = text
        if code is not None:
            assert done.returncode == code, f"{name}: exit {done.returncode}\n{text[-3000:]}"
        return text

    def cli(self, name: str, *args: str, code: int | None = 0, **env: str) -> str:
        return self.run(name, sys.executable, "-m", "mlflow_bucket.cli", *args, code=code, **env)


def _user_shell(tmp_path: Path) -> dict[str, str]:
    """os.environ without any cloud, MLflow or mlflow-bucket setting, plus DEBUG logging."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MLFLOW_", "GOOGLE_", "GCSFS_", "STORAGE_EMULATOR"))
    }
    env.update(debug_logging(tmp_path))
    env.update(
        MLFLOW_BUCKET_USER_CONFIG="",
        MLFLOW_BUCKET_SPOOL_DIR=str(tmp_path / "state" / "spool"),
        MLFLOW_BUCKET_CACHE_DIR=str(tmp_path / "state" / "cache"),
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
    )
    return env


TRAIN = """\
import mlflow

mlflow.set_experiment("planted")
with mlflow.start_run(run_name="planted") as run:
    mlflow.log_param("lr", 0.1)
    for step in range(3):
        mlflow.log_metric("loss", 1 / (step + 1), step=step)
    with open("weights.txt", "w") as f:
        f.write("weights")
    mlflow.log_artifact("weights.txt")
print("RUN", run.info.run_id)
"""


def _ui(bench: Bench, run_id: str) -> None:
    """``mlflow-bucket ui`` until its URL shows, a few pages' requests, then Ctrl-C."""
    log = bench.project / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow_bucket.cli", "ui", "--port", "0"],
            cwd=bench.project,
            env=bench.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while not (found := re.search(r"MLflow UI for \S+: (http://\S+)", log.read_text())):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the UI did not start"
            time.sleep(0.3)
        url = found.group(1)
        api = f"{url}/ajax-api/2.0/mlflow"
        answers = [
            _call(f"{api}/experiments/search", "POST", {"max_results": 10}),
            _call(f"{api}/runs/get?run_id={run_id}"),
            _call(f"{api}/artifacts/list?run_id={run_id}"),
            _call(f"{url}/get-artifact?path=weights.txt&run_uuid={run_id}"),
        ]
        assert [status for status, _ in answers] == [200] * len(answers), answers
        assert answers[-1][1] == "weights"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    bench.outputs["ui (and its mlflow server)"] = log.read_text(errors="replace")
    bench.outputs["the ui's answers"] = "\n".join(body for _, body in answers)


def _every_command(bench: Bench) -> None:
    bench.cli("config", "config")
    bench.cli("config --json", "config", "--json")
    bench.cli("doctor", "doctor")
    script = bench.project / "train.py"
    script.write_text(TRAIN)
    trained = bench.run("training script", sys.executable, str(script))
    run_id = re.search(r"^RUN (\w+)$", trained, re.MULTILINE)
    assert run_id, trained[-3000:]
    status = bench.cli("status", "status")
    assert "planted" in status
    _ui(bench, run_id.group(1))


# Six commands, two of them importing MLflow's server, on a loaded machine.
@pytest.mark.timeout(900)
def test_no_aws_credential_in_any_output_with_debug_logging(
    iam: Any, tmp_path: Path, record_figures: Any
) -> None:
    emulator, creds = iam
    project = tmp_path / "project"
    project.mkdir()
    (project / "mlflow-bucket.toml").write_text(f'uri = "{URI}"\n')
    env = {**_user_shell(tmp_path), **_env(emulator, creds["writer"])}
    bench = Bench(project, env, _aws_secrets(creds))
    _every_command(bench)
    everything = "\n".join(bench.outputs.values())
    # The requests were logged, headers and all: what was searched held them.
    assert "X-Amz-Security-Token" in everything and "botocore" in everything
    assert_no_leak(bench.outputs, bench.planted)
    record_figures(
        kind="aws credentials, every command, DEBUG",
        outputs=len(bench.outputs),
        chars_searched=len(everything),
        secrets_found=0,
    )


class _TokenEndpoint(ThreadingHTTPServer):
    """Google's OAuth token endpoint, as a service-account key names it: answers
    every JWT grant with one planted access token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.grants = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # the handler's; self is the server's
                length = int(handler.headers.get("Content-Length") or 0)
                handler.rfile.read(length)
                self.grants += 1
                body = json.dumps(
                    {"access_token": self.token, "expires_in": 3600, "token_type": "Bearer"}
                ).encode()
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"


@pytest.fixture
def token_endpoint() -> Iterator[_TokenEndpoint]:
    server = _TokenEndpoint(token=_random(120, string.ascii_letters + string.digits + "-_"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _service_account_key(path: Path, token_uri: str, project: str) -> dict[str, str]:
    """A service-account key file; its secrets by name."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_id = secrets.token_hex(20)
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": key_id,
                "private_key": pem,
                "client_email": f"trainer@{project}.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )
    )
    body = "".join(pem.splitlines()[1:-1])
    return {
        "service-account private key": body[100:160],
        "service-account private key id": key_id,
    }


# Six commands, two of them importing MLflow's server, on a loaded machine.
@pytest.mark.timeout(900)
def test_no_gcs_credential_in_any_output_with_debug_logging(
    gcs_emulator: GcsEmulator,
    token_endpoint: _TokenEndpoint,
    tmp_path: Path,
    record_figures: Any,
) -> None:
    bucket = f"planted-{secrets.token_hex(6)}"
    gcs_emulator.create_bucket(bucket)
    project = tmp_path / "project"
    project.mkdir()
    (project / "mlflow-bucket.toml").write_text(f'uri = "gs://{bucket}/team"\n')
    key_file = tmp_path / "service-account.json"
    planted = _service_account_key(key_file, token_endpoint.url, "planted-project")
    planted["GCS access token"] = token_endpoint.token
    env = {
        **_user_shell(tmp_path),
        "STORAGE_EMULATOR_HOST": gcs_emulator.endpoint,
        "GOOGLE_CLOUD_PROJECT": "planted-project",
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
    }
    bench = Bench(project, env, planted)
    _every_command(bench)
    # The key was used: its token was fetched (and sent with every request).
    assert token_endpoint.grants > 0
    assert_no_leak(bench.outputs, bench.planted)
    everything = "\n".join(bench.outputs.values())
    assert "DEBUG" in everything
    record_figures(
        kind="gcs credentials, every command, DEBUG",
        token_grants=token_endpoint.grants,
        outputs=len(bench.outputs),
        chars_searched=len(everything),
        secrets_found=0,
    )


def test_urls_with_credentials_are_refused_or_redacted_in_every_output(
    tmp_path: Path,
) -> None:
    """Each URL-valued setting with credentials in it, in each place it may be
    set, is refused by every command, naming the place and the key; MLflow's
    own server URI, not ours to refuse, is printed redacted."""
    key_id = "AKIA" + _random(16, string.ascii_uppercase + string.digits)
    secret = _random(40)
    token = _random(200)
    signature = secrets.token_hex(32)
    password = _random(24)
    planted = {
        "access key id": key_id,
        "secret access key": secret,
        "session token": token,
        "signature": signature,
        "password": password,
    }
    presigned = (
        f"https://team.s3.amazonaws.com/artifacts?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={key_id}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Security-Token={token}&X-Amz-Signature={signature}"
    )
    userinfo = f"http://{key_id}:{secret}@127.0.0.1:9"
    project = tmp_path / "project"
    project.mkdir()
    user_file = tmp_path / "user-config.toml"
    bench = Bench(project, _user_shell(tmp_path), planted)
    own = project / "mlflow-bucket.toml"
    store = 'uri = "s3://team/ml"\n'
    endpoint = f'[storage]\nendpoint_url = "{userinfo}"\n'
    files = [
        (own, store + endpoint, "[storage] endpoint_url"),
        (own, store + f'artifact_root = "{presigned}"\n', "artifact_root"),
        (own, f'uri = "s3://team/ml?X-Amz-Security-Token={token}"\n', "uri"),
        (own, store + f'registry_uri = "gs://{key_id}:{secret}@team/reg"\n', "registry_uri"),
        (user_file, endpoint, "[storage] endpoint_url"),
    ]
    for path, text, key in files:
        for other in (own, user_file):
            other.unlink(missing_ok=True)
        path.write_text(text)
        for command in ("config", "status", "doctor", "ui"):
            out = bench.cli(
                f"{command} with {key} in {path.name}",
                command,
                code=3,
                MLFLOW_BUCKET_USER_CONFIG=str(user_file),
            )
            assert str(path) in out and key in out and "carries credentials" in out, out
    own.write_text('uri = "s3://team/ml"\n')
    variables = [
        ("MLFLOW_BUCKET_URI", f"s3://{key_id}:{secret}@team/ml"),
        ("MLFLOW_BUCKET_REGISTRY_URI", f"gs://team/reg?token={token}"),
        ("MLFLOW_BUCKET_ARTIFACT_ROOT", presigned),
        ("MLFLOW_TRACKING_URI", f"s3://team/ml?X-Amz-Signature={signature}"),
        ("MLFLOW_REGISTRY_URI", f"gs://{key_id}:{secret}@team/ml"),
        ("AWS_ENDPOINT_URL", userinfo),
        ("AWS_ENDPOINT_URL_S3", f"https://s3.example/?X-Amz-Signature={signature}"),
        ("STORAGE_EMULATOR_HOST", f"{key_id}:{secret}@127.0.0.1:9"),
    ]
    for name, value in variables:
        for command in ("config", "status", "ui"):
            out = bench.cli(f"{command} with {name}", command, code=3, **{name: value})
            assert name in out and "carries credentials" in out, out
    # On the command line: refused as a bad argument.
    for command in ("status", "doctor", "ui", "init"):
        out = bench.cli(f"{command} URI", command, f"s3://{key_id}:{secret}@team/ml", code=None)
        assert "carries credentials" in out, out
    # MLflow's own tracking server URI is MLflow's business: shown redacted.
    server = f"https://mlflow:{password}@tracking.example/?token={token}"
    for args in (("config",), ("config", "--json"), ("config", "--uri")):
        out = bench.cli(" ".join(args) + " (http server)", *args, MLFLOW_TRACKING_URI=server)
        assert "tracking.example" in out, out
    out = bench.cli("status (http server)", "status", code=3, MLFLOW_TRACKING_URI=server)
    assert "is not a bucket store" in out
    assert_no_leak(bench.outputs, planted)
