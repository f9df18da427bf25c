"""Properties of the s3-store module that checkov does not check."""

from __future__ import annotations

from conftest import LOCAL_REF, Module, as_list, blocks

WRITER_ACTIONS = {
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetBucketLocation",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
}
READER_ACTIONS = {"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"}
MUTATING_ACTIONS = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:DeleteObjectVersion"}


def _statements(module: Module, policy_local: str) -> list[dict]:
    """Statements of a policy local: literal statement lists, following
    ``concat(local.a, local.b)`` and ``${local.x}`` references."""
    value = module.locals[policy_local]
    if isinstance(value, dict) and "Statement" in value:
        value = value["Statement"]
    if isinstance(value, list):
        return value
    assert isinstance(value, str), value
    ref = LOCAL_REF.match(value)
    if ref:
        return _statements(module, ref.group(1))
    assert value.startswith("${concat("), f"unexpected statement expression {value}"
    names = [n.strip().removeprefix("local.") for n in value[len("${concat(") : -2].split(",")]
    result = []
    for name in names:
        inner = module.locals[name]
        if isinstance(inner, str) and "? [] :" in inner:
            # var.x == null ? [] : [ ... ] -- optional KMS statement; checked separately.
            continue
        result.extend(_statements(module, name))
    return result


def _actions(statements: list[dict]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def test_bucket_policy_denies_non_tls(s3: Module):
    policy = s3.resource("aws_s3_bucket_policy", "this")
    assert policy["policy"] == "${jsonencode(local.bucket_policy)}"
    statements = _statements(s3, "bucket_policy")
    deny = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and s["Principal"] == "*"
        and s["Action"] == "s3:*"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert deny, "no statement denies aws:SecureTransport = false"
    assert set(deny[0]["Resource"]) == {"${local.bucket_arn}", "${local.bucket_arn}/*"}


def test_bucket_policy_never_allows(s3: Module):
    assert all(s["Effect"] == "Deny" for s in _statements(s3, "bucket_policy"))


def test_log_bucket_policy_denies_non_tls_and_allows_only_the_logging_service(s3: Module):
    statements = s3.locals["log_bucket_policy"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in statements)
    for s in statements:
        if s["Effect"] == "Allow":
            assert s["Principal"] == {"Service": "logging.s3.amazonaws.com"}
            assert s["Action"] == "s3:PutObject"
            assert "aws:SourceArn" in s["Condition"]["ArnLike"]


def test_lifecycle_aborts_multipart_and_expires_noncurrent_only(s3: Module):
    rules = blocks(s3.resource("aws_s3_bucket_lifecycle_configuration", "this"), "rule")
    assert all(r["status"] == "Enabled" for r in rules)
    assert any(blocks(r, "abort_incomplete_multipart_upload") for r in rules), "no abort of incomplete multipart uploads"
    noncurrent = [b for r in rules for b in blocks(r, "noncurrent_version_expiration")]
    assert noncurrent and noncurrent[0]["noncurrent_days"] == "${var.noncurrent_version_expiration_days}"
    for rule in rules:
        assert "transition" not in rule and "dynamic" not in rule
        for expiration in blocks(rule, "expiration"):
            # Only delete-marker cleanup: never days or date, which would expire live objects.
            assert set(expiration) == {"expired_object_delete_marker"}, expiration
            assert expiration["expired_object_delete_marker"] is True


def test_lifecycle_waits_for_versioning(s3: Module):
    lifecycle = s3.resource("aws_s3_bucket_lifecycle_configuration", "this")
    assert "${aws_s3_bucket_versioning.this}" in lifecycle["depends_on"]
    versioning = s3.resource("aws_s3_bucket_versioning", "this")
    assert blocks(versioning, "versioning_configuration")[0]["status"] == "Enabled"


def test_public_access_block_and_ownership(s3: Module):
    for name in ("this", "logs"):
        block = s3.resource("aws_s3_bucket_public_access_block", name)
        for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
            assert block[key] is True, f"{name}.{key}"
        ownership = s3.resource("aws_s3_bucket_ownership_controls", name)
        assert blocks(ownership, "rule")[0]["object_ownership"] == "BucketOwnerEnforced"


def test_encryption_defaults_to_sse_s3_with_optional_kms(s3: Module):
    sse = s3.resource("aws_s3_bucket_server_side_encryption_configuration", "this")
    default = blocks(blocks(sse, "rule")[0], "apply_server_side_encryption_by_default")[0]
    assert default["sse_algorithm"] == '${var.kms_key_arn == null ? "AES256" : "aws:kms"}'
    assert default["kms_master_key_id"] == "${var.kms_key_arn}"
    assert s3.variables["kms_key_arn"]["default"] is None


def test_writers_can_create_and_delete(s3: Module):
    statements = _statements(s3, "writer_statements")
    assert _actions(statements) == WRITER_ACTIONS


def test_readers_cannot_write(s3: Module):
    statements = _statements(s3, "reader_statements")
    assert _actions(statements) == READER_ACTIONS
    assert not _actions(statements) & MUTATING_ACTIONS


def test_policies_are_scoped_to_the_project_prefixes(s3: Module):
    assert s3.locals["object_resources"] == '${[for p in var.projects : "${local.bucket_arn}/${p}/*"]}'
    assert s3.locals["list_prefixes"] == '${flatten([for p in var.projects : [p, "${p}/*"]])}'
    for local in ("writer_statements", "reader_statements"):
        for s in _statements(s3, local):
            assert s["Effect"] == "Allow"
            resources = as_list(s["Resource"])
            assert "*" not in resources
            assert not any(a.endswith(":*") or a == "*" for a in as_list(s["Action"])), s
            if "s3:ListBucket" in as_list(s["Action"]):
                assert s["Condition"]["StringLike"]["s3:prefix"] == "${local.list_prefixes}"
            elif set(as_list(s["Action"])) & {"s3:GetObject", "s3:PutObject"}:
                assert s["Resource"] == "${local.object_resources}"
            else:
                assert resources == ["${local.bucket_arn}"]


def test_kms_statements_are_optional_and_minimal(s3: Module):
    assert s3.locals["writer_kms_statements"].startswith("${var.kms_key_arn == null ? [] :")
    assert '"kms:GenerateDataKey"' in s3.locals["writer_kms_statements"]
    assert s3.locals["reader_kms_statements"].startswith("${var.kms_key_arn == null ? [] :")
    assert "GenerateDataKey" not in s3.locals["reader_kms_statements"]


def test_policies_attach_to_the_right_roles(s3: Module):
    writer = s3.resource("aws_iam_role_policy_attachment", "writer")
    reader = s3.resource("aws_iam_role_policy_attachment", "reader")
    assert "var.writer_role_names" in writer["for_each"] and writer["policy_arn"] == "${aws_iam_policy.writer[0].arn}"
    assert "var.reader_role_names" in reader["for_each"] and reader["policy_arn"] == "${aws_iam_policy.reader[0].arn}"
    assert s3.resource("aws_iam_policy", "writer")["policy"] == "${jsonencode(local.writer_policy)}"
    assert s3.resource("aws_iam_policy", "reader")["policy"] == "${jsonencode(local.reader_policy)}"


def test_no_public_principal_is_ever_allowed(s3: Module):
    for local in ("bucket_policy", "log_bucket_policy"):
        for s in s3.locals[local]["Statement"] if isinstance(s3.locals[local]["Statement"], list) else _statements(s3, local):
            if s["Effect"] == "Allow":
                assert s["Principal"] not in ("*", {"AWS": "*"}), s


def test_access_logging_is_on_by_default(s3: Module):
    assert s3.variables["create_access_log_bucket"]["default"] is True
    logging = s3.resource("aws_s3_bucket_logging", "this")
    assert logging["target_bucket"] == "${local.access_log_bucket}"


def test_outputs_uri_and_snippet(s3: Module):
    assert s3.locals["tracking_uris"] == '${{for p in var.projects : p => "s3://${aws_s3_bucket.this.bucket}/${p}"}}'
    snippet = s3.locals["config_snippets"]
    assert "[tool.mlflow-bucket]" in snippet and 'uri = "${uri}"' in snippet
    assert s3.outputs["tracking_uris"]["value"] == "${local.tracking_uris}"
    assert s3.outputs["config_snippets"]["value"] == "${local.config_snippets}"
