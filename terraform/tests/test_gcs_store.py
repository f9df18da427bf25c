"""Properties of the gcs-store module that checkov does not check."""

from __future__ import annotations

import re

from conftest import Module, blocks

WRITER_PERMISSIONS = {
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
}
READER_PERMISSIONS = {"storage.buckets.get", "storage.objects.get", "storage.objects.list"}
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def _dynamic(body: dict, name: str) -> dict | None:
    for entry in body.get("dynamic", []):
        if name in entry:
            return entry[name]
    return None


def test_bucket_is_private(gcs: Module):
    for name in ("this", "logs"):
        bucket = gcs.resource("google_storage_bucket", name)
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"


def test_recovery_window_is_chosen_by_the_team(gcs: Module):
    bucket = gcs.resource("google_storage_bucket", "this")
    assert blocks(bucket, "versioning")[0]["enabled"] == "${var.versioning_enabled}"
    assert blocks(bucket, "soft_delete_policy")[0]["retention_duration_seconds"] == "${var.soft_delete_retention_days * 86400}"
    precondition = bucket["lifecycle"][0]["precondition"][0]
    assert precondition["condition"] == "${var.versioning_enabled || var.soft_delete_retention_days > 0}"


def test_lifecycle_never_deletes_live_objects(gcs: Module):
    rules = blocks(gcs.resource("google_storage_bucket", "this"), "lifecycle_rule")
    assert "lifecycle_rule" not in str(gcs.resource("google_storage_bucket", "this").get("dynamic", []))
    types = [blocks(r, "action")[0]["type"] for r in rules]
    assert sorted(types) == ["AbortIncompleteMultipartUpload", "Delete"]
    for rule in rules:
        action = blocks(rule, "action")[0]
        condition = blocks(rule, "condition")[0]
        if action["type"] == "Delete":
            # Only noncurrent versions: ARCHIVED state and a noncurrent age.
            assert condition["with_state"] == "ARCHIVED"
            assert condition["days_since_noncurrent_time"] == "${var.noncurrent_version_retention_days}"
            assert "age" not in condition and "created_before" not in condition
        elif action["type"] == "AbortIncompleteMultipartUpload":
            assert condition == {"age": "${var.abort_incomplete_multipart_upload_days}"}
        else:  # pragma: no cover - guarded by the sorted(types) assertion
            raise AssertionError(action)
        assert action["type"] != "SetStorageClass"


def test_optional_cmek_and_agent_grant(gcs: Module):
    bucket = gcs.resource("google_storage_bucket", "this")
    encryption = _dynamic(bucket, "encryption")
    assert encryption["for_each"] == "${local.use_kms ? [var.kms_key_name] : []}"
    assert gcs.variables["kms_key_name"]["default"] is None
    grant = gcs.resource("google_kms_crypto_key_iam_member", "storage_agent")
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert "${google_kms_crypto_key_iam_member.storage_agent}" in bucket["depends_on"]


def test_access_logging_to_a_log_bucket(gcs: Module):
    logging = _dynamic(gcs.resource("google_storage_bucket", "this"), "logging")
    assert logging["content"][0]["log_bucket"] == "${local.access_log_bucket}"
    assert gcs.variables["create_access_log_bucket"]["default"] is True
    writer = gcs.resource("google_storage_bucket_iam_member", "log_writer")
    assert writer["member"] == "group:cloud-storage-analytics@google.com"
    assert writer["role"] == "roles/storage.objectCreator"


def test_labels_are_applied(gcs: Module):
    for name in ("this", "logs"):
        assert "local.labels" in gcs.resource("google_storage_bucket", name)["labels"]


def test_custom_roles_hold_exact_permissions(gcs: Module):
    assert set(gcs.locals["writer_permissions"]) == WRITER_PERMISSIONS
    assert set(gcs.locals["reader_permissions"]) == READER_PERMISSIONS
    assert gcs.resource("google_project_iam_custom_role", "writer")["permissions"] == "${local.writer_permissions}"
    assert gcs.resource("google_project_iam_custom_role", "reader")["permissions"] == "${local.reader_permissions}"
    assert gcs.variables["iam_mode"]["default"] == "custom"


def test_readers_cannot_write(gcs: Module):
    assert not {p for p in gcs.locals["reader_permissions"] if not p.endswith((".get", ".list"))}
    assert gcs.locals["reader_predefined_roles"] == ["roles/storage.objectViewer", "roles/storage.legacyBucketReader"]


def test_writers_can_create_and_delete(gcs: Module):
    assert {"storage.objects.create", "storage.objects.delete"} <= set(gcs.locals["writer_permissions"])
    assert gcs.locals["writer_predefined_roles"] == ["roles/storage.objectUser", "roles/storage.legacyBucketReader"]


def test_no_admin_or_project_wide_grants(gcs: Module):
    roles = gcs.locals["writer_predefined_roles"] + gcs.locals["reader_predefined_roles"]
    assert not [r for r in roles if "admin" in r.lower() or r in ("roles/owner", "roles/editor")]
    for rtype, _ in gcs.resources:
        assert not rtype.startswith("google_project_iam_member") and not rtype.startswith("google_project_iam_binding")
        assert not rtype.endswith("_iam_policy"), "authoritative IAM policies would drop other grants"


def test_bindings_are_on_the_bucket_for_the_two_groups(gcs: Module):
    binding = gcs.resource("google_storage_bucket_iam_member", "this")
    assert binding["bucket"] == "${google_storage_bucket.this.name}"
    bindings = gcs.locals["bucket_bindings"]
    assert "var.writers" in bindings and "var.readers" in bindings
    assert "local.writer_roles" in bindings and "local.reader_roles" in bindings


def test_public_principals_are_rejected(gcs: Module):
    for name in ("writers", "readers"):
        conditions = " ".join(v["condition"] for v in gcs.variables[name]["validation"])
        assert '"allusers", "allauthenticatedusers"' in conditions and "lower(m)" in conditions
        assert "goog/public:" in conditions
    for module_text in gcs.sources.values():
        for member in re.findall(r'member\s*=\s*"([^"]+)"', module_text):
            assert member not in PUBLIC_MEMBERS


def test_outputs_uri_and_snippet(gcs: Module):
    assert gcs.locals["tracking_uris"] == '${{for p in var.projects : p => "gs://${google_storage_bucket.this.name}/${p}"}}'
    snippet = gcs.locals["config_snippets"]
    assert "[tool.mlflow-bucket]" in snippet and 'uri = "${uri}"' in snippet
    assert gcs.outputs["bucket_name"]["value"] == "${google_storage_bucket.this.name}"
