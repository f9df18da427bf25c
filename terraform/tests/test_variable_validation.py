"""Run the modules' variable validations through Terraform itself.

A root holding only a copy of a module's variables.tf needs no provider, so
`terraform plan` evaluates every validation offline, for the GCS module too
when no google provider is at hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import MODULES_DIR

TERRAFORM = shutil.which("terraform")
pytestmark = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not on PATH")

GCS_OK = {
    "project_id": "team-ml-prod",
    "bucket_name": "team-mlflow-store",
    "location": "EU",
    "projects": ["project-a", "team-b/project-c"],
    "writers": ["group:ml-writers@example.com", "serviceAccount:trainer@team-ml-prod.iam.gserviceaccount.com"],
    "readers": ["group:ml-readers@example.com", "principalSet://iam.googleapis.com/locations/global/workforcePools/p/group/g"],
}
S3_OK = {
    "bucket_name": "team-mlflow-store",
    "projects": ["project-a", "team-b/project-c"],
    "writer_role_names": ["ml-training"],
    "reader_role_names": ["ml-ui"],
    "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab",
}


def _plan(tmp_path: Path, module: str, values: dict) -> subprocess.CompletedProcess:
    root = tmp_path / module
    root.mkdir(exist_ok=True)
    shutil.copy(MODULES_DIR / module / "variables.tf", root / "variables.tf")
    (root / "test.auto.tfvars.json").write_text(json.dumps(values), encoding="utf-8")
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_DATA_DIR=str(root / ".terraform"), CHECKPOINT_DISABLE="1")
    return subprocess.run(
        [TERRAFORM, "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_rejected(
    tmp_path: Path, module: str, base: dict, change: dict, variable: str, message: str | None = None
) -> None:
    result = _plan(tmp_path, module, {**base, **change})
    assert result.returncode != 0, f"{module}: {change} was accepted"
    assert "Invalid value for variable" in result.stderr, result.stderr
    assert f"var.{variable} is" in result.stderr, result.stderr
    if message is not None:
        assert message in " ".join(result.stderr.split()), result.stderr


def test_gcs_valid_inputs_pass(tmp_path: Path):
    result = _plan(tmp_path, "gcs-store", GCS_OK)
    assert result.returncode == 0, result.stderr


def test_s3_valid_inputs_pass(tmp_path: Path):
    result = _plan(tmp_path, "s3-store", S3_OK)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", "ALLUSERS", "principalSet://goog/public:all"])
@pytest.mark.parametrize("group", ["writers", "readers"])
def test_gcs_rejects_public_principals(tmp_path: Path, group: str, member: str):
    _assert_rejected(
        tmp_path, "gcs-store", GCS_OK, {group: [*GCS_OK[group], member]}, group, f"{group} must never contain allUsers"
    )


@pytest.mark.parametrize("member", ["ml-team@example.com", "group:", "group:a b"])
def test_gcs_rejects_malformed_members(tmp_path: Path, member: str):
    _assert_rejected(tmp_path, "gcs-store", GCS_OK, {"writers": [member]}, "writers")


@pytest.mark.parametrize("name", ["ab", "Team-Bucket", "goog-mlflow", "my-google-store", "a.b.c", "-leading", "x" * 64])
def test_gcs_rejects_bad_bucket_names(tmp_path: Path, name: str):
    _assert_rejected(tmp_path, "gcs-store", GCS_OK, {"bucket_name": name}, "bucket_name")


@pytest.mark.parametrize("name", ["ab", "Team-Bucket", "team.bucket", "xn--bucket", "bucket-s3alias", "a" * 64, "bucket-"])
def test_s3_rejects_bad_bucket_names(tmp_path: Path, name: str):
    _assert_rejected(tmp_path, "s3-store", S3_OK, {"bucket_name": name}, "bucket_name")


@pytest.mark.parametrize(
    "projects",
    [[], ["/a"], ["a/"], ["a//b"], ["A"], ["a", "a"], ["team", "team/project"], ["a/../b"], ["a b"]],
)
@pytest.mark.parametrize("module, base", [("gcs-store", GCS_OK), ("s3-store", S3_OK)])
def test_rejects_bad_prefixes(tmp_path: Path, module: str, base: dict, projects: list[str]):
    _assert_rejected(tmp_path, module, base, {"projects": projects}, "projects")


@pytest.mark.parametrize(
    "variable, value",
    [
        ("soft_delete_retention_days", 3),
        ("soft_delete_retention_days", 91),
        ("noncurrent_version_retention_days", 0),
        ("noncurrent_version_retention_days", 1.5),
        ("abort_incomplete_multipart_upload_days", 0),
        ("access_log_retention_days", 4000),
    ],
)
def test_gcs_rejects_out_of_range_retention(tmp_path: Path, variable: str, value: float):
    _assert_rejected(tmp_path, "gcs-store", GCS_OK, {variable: value}, variable)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("noncurrent_version_expiration_days", 0),
        ("noncurrent_version_expiration_days", 3651),
        ("abort_incomplete_multipart_upload_days", 366),
        ("access_log_retention_days", 0),
    ],
)
def test_s3_rejects_out_of_range_retention(tmp_path: Path, variable: str, value: float):
    _assert_rejected(tmp_path, "s3-store", S3_OK, {variable: value}, variable)


def test_gcs_soft_delete_can_be_turned_off(tmp_path: Path):
    result = _plan(tmp_path, "gcs-store", {**GCS_OK, "soft_delete_retention_days": 0})
    assert result.returncode == 0, result.stderr


def test_s3_rejects_kms_alias(tmp_path: Path):
    _assert_rejected(tmp_path, "s3-store", S3_OK, {"kms_key_arn": "alias/mlflow"}, "kms_key_arn")


def test_gcs_rejects_bad_kms_key(tmp_path: Path):
    _assert_rejected(tmp_path, "gcs-store", GCS_OK, {"kms_key_name": "my-key"}, "kms_key_name")


def test_s3_rejects_role_arns(tmp_path: Path):
    _assert_rejected(
        tmp_path, "s3-store", S3_OK, {"writer_role_names": ["arn:aws:iam::123456789012:role/ml"]}, "writer_role_names"
    )
