"""The plan assertions of check_plan.py, on small synthetic plans, so that
both the S3 and the GCS paths are exercised even where no provider mirror
lets check.sh produce a real plan."""

from __future__ import annotations

import copy
import json

import check_plan

M = "module.mlflow_store"
B = check_plan.BUCKET


def _plan(resources: dict[str, dict], scheme: str) -> dict:
    return {
        "planned_values": {
            "outputs": {
                "tracking_uris": {"value": {p: f"{scheme}://{B}/{p}" for p in ("project-a", "project-b")}},
                "config_snippets": {"value": {"project-a": f'[tool.mlflow-bucket]\nuri = "{scheme}://{B}/project-a"\n'}},
            },
            "root_module": {
                "child_modules": [
                    {"resources": [{"address": f"{M}.{a}", "values": v} for a, v in resources.items()]}
                ]
            },
        }
    }


def _policy(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


ARN = f"arn:aws:s3:::{B}"
OBJECTS = [f"{ARN}/project-a/*", f"{ARN}/project-b/*"]


def s3_plan() -> dict:
    return _plan(
        {
            "aws_s3_bucket.this": {"bucket": B},
            "aws_s3_bucket_public_access_block.this": {
                k: True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
            },
            "aws_s3_bucket_ownership_controls.this": {"rule": [{"object_ownership": "BucketOwnerEnforced"}]},
            "aws_s3_bucket_versioning.this": {"versioning_configuration": [{"status": "Enabled"}]},
            "aws_s3_bucket_server_side_encryption_configuration.this": {
                "rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "AES256"}]}]
            },
            "aws_s3_bucket_policy.this": {
                "policy": _policy(
                    [
                        {
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [ARN, f"{ARN}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ]
                )
            },
            "aws_s3_bucket_lifecycle_configuration.this": {
                "rule": [
                    {"id": "a", "status": "Enabled", "abort_incomplete_multipart_upload": [{"days_after_initiation": 7}],
                     "noncurrent_version_expiration": [], "expiration": [], "transition": []},
                    {"id": "n", "status": "Enabled", "abort_incomplete_multipart_upload": [],
                     "noncurrent_version_expiration": [{"noncurrent_days": 30}], "expiration": [], "transition": []},
                    {"id": "d", "status": "Enabled", "abort_incomplete_multipart_upload": [],
                     "noncurrent_version_expiration": [],
                     "expiration": [{"days": 0, "date": None, "expired_object_delete_marker": True}], "transition": []},
                ]
            },
            "aws_s3_bucket_logging.this[0]": {"target_bucket": f"{B}-access-logs"},
            "aws_iam_policy.writer[0]": {
                "policy": _policy(
                    [
                        {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [ARN]},
                        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [ARN]},
                        {"Effect": "Allow", "Resource": OBJECTS, "Action": sorted(
                            check_plan.WRITER_ACTIONS - {"s3:GetBucketLocation", "s3:ListBucket"})},
                    ]
                )
            },
            "aws_iam_policy.reader[0]": {
                "policy": _policy(
                    [
                        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": [ARN]},
                        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": OBJECTS},
                    ]
                )
            },
            'aws_iam_role_policy_attachment.writer["ml-training"]': {},
            'aws_iam_role_policy_attachment.reader["ml-ui"]': {},
        },
        "s3",
    )


def gcs_plan() -> dict:
    return _plan(
        {
            "google_storage_bucket.this": {
                "name": B,
                "uniform_bucket_level_access": True,
                "public_access_prevention": "enforced",
                "versioning": [{"enabled": True}],
                "soft_delete_policy": [{"retention_duration_seconds": 604800}],
                "logging": [{"log_bucket": f"{B}-access-logs", "log_object_prefix": B}],
                "lifecycle_rule": [
                    {"action": [{"type": "Delete"}], "condition": [{"with_state": "ARCHIVED", "days_since_noncurrent_time": 30}]},
                    {"action": [{"type": "AbortIncompleteMultipartUpload"}], "condition": [{"age": 7}]},
                ],
            },
            "google_project_iam_custom_role.writer[0]": {"permissions": sorted(check_plan.GCS_WRITER_PERMISSIONS)},
            "google_project_iam_custom_role.reader[0]": {"permissions": sorted(check_plan.GCS_READER_PERMISSIONS)},
            'google_storage_bucket_iam_member.this["writer/custom/group:w@example.com"]': {
                "bucket": B, "member": "group:w@example.com"},
            'google_storage_bucket_iam_member.this["reader/custom/group:r@example.com"]': {
                "bucket": B, "member": "group:r@example.com"},
        },
        "gs",
    )


def _values(plan: dict, address: str) -> dict:
    for resource in plan["planned_values"]["root_module"]["child_modules"][0]["resources"]:
        if resource["address"] == f"{M}.{address}":
            return resource["values"]
    raise KeyError(address)


def test_good_plans_pass():
    assert check_plan.check(s3_plan()) == []
    assert check_plan.check_gcs(gcs_plan()) == []


def test_s3_current_object_expiry_fails():
    plan = copy.deepcopy(s3_plan())
    _values(plan, "aws_s3_bucket_lifecycle_configuration.this")["rule"][2]["expiration"] = [
        {"days": 90, "date": None, "expired_object_delete_marker": False}
    ]
    assert any("expires current objects" in f for f in check_plan.check(plan))


def test_s3_reader_with_delete_fails():
    plan = copy.deepcopy(s3_plan())
    values = _values(plan, "aws_iam_policy.reader[0]")
    doc = json.loads(values["policy"])
    doc["Statement"][1]["Action"].append("s3:DeleteObject")
    values["policy"] = json.dumps(doc)
    assert any(f.startswith("reader actions") for f in check_plan.check(plan))


def test_s3_missing_tls_deny_fails():
    plan = copy.deepcopy(s3_plan())
    _values(plan, "aws_s3_bucket_policy.this")["policy"] = _policy([])
    assert any("non-TLS" in f for f in check_plan.check(plan))


def test_gcs_live_delete_rule_fails():
    plan = copy.deepcopy(gcs_plan())
    _values(plan, "google_storage_bucket.this")["lifecycle_rule"][0]["condition"] = [{"age": 30, "with_state": "ANY"}]
    assert any("may match live objects" in f for f in check_plan.check_gcs(plan))


def test_gcs_public_member_fails():
    plan = copy.deepcopy(gcs_plan())
    _values(plan, 'google_storage_bucket_iam_member.this["reader/custom/group:r@example.com"]')["member"] = "allUsers"
    assert any("public principal" in f for f in check_plan.check_gcs(plan))


def test_snippet_mismatch_fails():
    plan = copy.deepcopy(gcs_plan())
    plan["planned_values"]["outputs"]["config_snippets"]["value"]["project-a"] = "uri = 'x'"
    assert any("config_snippets" in f for f in check_plan.check_gcs(plan))
