"""``mlflow-bucket doctor``, and the Terraform roles checked against what the store calls.

The S3 emulator runs with moto's IAM enforcement on; the reader and writer
policies are built from the actions in terraform/modules/s3-store/iam.tf,
so a change to the module that breaks the store shows up here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

from mlflow_bucket.doctor import run_checks
from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.s3_emulator import S3Emulator

IAM_TF = Path(__file__).parents[1] / "terraform" / "modules" / "s3-store" / "iam.tf"
BUCKET = "team-bucket"
PROJECT = "proj-a"
# Unauthenticated actions moto allows before enforcing IAM: the set-up below.
SETUP_ACTIONS = 10


def _unquote(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip('"')
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()}
    return value


def module_policy(group: str) -> dict[str, Any]:
    """The module's policy for ``group`` ("reader"/"writer"), for one project."""
    parsed = hcl2.loads(IAM_TF.read_text())
    local: dict[str, Any] = {}
    for block in parsed["locals"]:
        local.update(block)
    substitutions: dict[str, Any] = {
        "${local.bucket_arn}": f"arn:aws:s3:::{BUCKET}",
        "${local.object_resources}": [f"arn:aws:s3:::{BUCKET}/{PROJECT}/*"],
        "${local.list_prefixes}": [PROJECT, f"{PROJECT}/*"],
    }

    def render(value: Any) -> Any:
        value = _unquote(value)
        if isinstance(value, str):
            return substitutions.get(value, value)
        if isinstance(value, list):
            out: list[Any] = []
            for v in value:
                r = render(v)
                out.extend(r if isinstance(r, list) and isinstance(v, str) else [r])
            return out
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items() if not k.startswith("__")}
        return value

    statements = render(local[f"{group}_statements"])
    assert all("${" not in json.dumps(s) for s in statements), statements
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.fixture(scope="module")
def iam_emulator() -> Iterator[S3Emulator]:
    with S3Emulator(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}) as emulator:
        yield emulator


def _credentials_for(emulator: S3Emulator, group: str) -> dict[str, Any]:
    admin = emulator.client()
    if group == "reader":  # the first call also creates the bucket
        admin.create_bucket(Bucket=BUCKET)
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=emulator.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    iam.create_user(UserName=group)
    arn = iam.create_policy(PolicyName=group, PolicyDocument=json.dumps(module_policy(group)))
    iam.attach_user_policy(UserName=group, PolicyArn=arn["Policy"]["Arn"])
    key = iam.create_access_key(UserName=group)["AccessKey"]
    return {
        "endpoint_url": emulator.endpoint,
        "key": key["AccessKeyId"],
        "secret": key["SecretAccessKey"],
        "client_kwargs": {"region_name": "us-east-1"},
    }


@pytest.fixture(scope="module")
def role_credentials(iam_emulator: S3Emulator) -> dict[str, dict[str, Any]]:
    return {group: _credentials_for(iam_emulator, group) for group in ("reader", "writer")}


def _statuses(options: dict[str, Any], project: str = PROJECT) -> dict[str, str]:
    with open_store(f"s3://{BUCKET}/{project}", **options) as store:
        return {c.name: c.status for c in run_checks(store)}


def test_the_module_reader_role_can_read_but_not_write(
    role_credentials: dict[str, dict[str, Any]],
) -> None:
    statuses = _statuses(role_credentials["reader"])
    assert statuses["bucket reachable"] == "pass"
    assert statuses["read"] == "pass"
    assert statuses["clock"] == "pass"
    assert statuses["write"] == "fail"


def test_the_module_writer_role_can_do_everything_the_store_does(
    role_credentials: dict[str, dict[str, Any]],
) -> None:
    statuses = _statuses(role_credentials["writer"])
    assert set(statuses.values()) == {"pass"}, statuses


def test_roles_stop_at_their_project_prefix(role_credentials: dict[str, dict[str, Any]]) -> None:
    statuses = _statuses(role_credentials["writer"], project="another-project")
    assert statuses["read"] == "fail"
    assert statuses["write"] == "fail"


def test_doctor_command_on_a_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "doctor", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[PASS] create-if-absent" in result.stdout
    assert "0 failed" in result.stdout
    # The probe objects are gone.
    assert not any(p.is_file() for p in (tmp_path / ".doctor").rglob("*"))


def test_doctor_exits_non_zero_and_names_the_fix_when_access_fails(
    role_credentials: dict[str, dict[str, Any]], iam_emulator: S3Emulator
) -> None:
    reader = role_credentials["reader"]
    env = {
        "AWS_ENDPOINT_URL": iam_emulator.endpoint,
        "AWS_ACCESS_KEY_ID": reader["key"],
        "AWS_SECRET_ACCESS_KEY": reader["secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "doctor", f"s3://{BUCKET}/{PROJECT}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "[FAIL] write" in result.stdout and "fix: grant" in result.stdout
    # A credential never appears in what the command prints.
    assert reader["secret"] not in result.stdout + result.stderr
