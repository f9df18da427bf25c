"""Assertions on the JSON of an offline `terraform plan` of tests/plan-s3
or tests/plan-gcs.

Usage: python check_plan.py {s3|gcs} PLAN.json

Standard library only. Exits non-zero with one line per failed assertion.
"""

from __future__ import annotations

import json
import sys

MODULE = "module.mlflow_store"
BUCKET = "example-team-mlflow"
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
GCS_WRITER_PERMISSIONS = {
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
}
GCS_READER_PERMISSIONS = {"storage.buckets.get", "storage.objects.get", "storage.objects.list"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _resources(plan: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}

    def walk(module: dict) -> None:
        for resource in module.get("resources", []):
            found[resource["address"]] = resource["values"]
        for child in module.get("child_modules", []):
            walk(child)

    walk(plan["planned_values"]["root_module"])
    return found


def _check_outputs(plan: dict, scheme: str, expect) -> None:
    outputs = plan["planned_values"].get("outputs", {})
    uris = outputs.get("tracking_uris", {}).get("value")
    expect(
        uris == {"project-a": f"{scheme}://{BUCKET}/project-a", "project-b": f"{scheme}://{BUCKET}/project-b"},
        f"tracking_uris output is {uris}",
    )
    snippet = (outputs.get("config_snippets", {}).get("value") or {}).get("project-a")
    expect(
        snippet == f'[tool.mlflow-bucket]\nuri = "{scheme}://{BUCKET}/project-a"\n',
        f"config_snippets output is {snippet!r}",
    )


def check_gcs(plan: dict) -> list[str]:
    failures: list[str] = []

    def expect(condition: bool, message: str) -> None:
        if not condition:
            failures.append(message)

    res = _resources(plan)
    get = lambda name: res.get(f"{MODULE}.{name}", {})  # noqa: E731

    bucket = get("google_storage_bucket.this")
    expect(bucket.get("name") == BUCKET, "store bucket missing from the plan")
    expect(bucket.get("uniform_bucket_level_access") is True, "uniform bucket-level access is off")
    expect(bucket.get("public_access_prevention") == "enforced", "public access prevention is not enforced")
    expect((bucket.get("versioning") or [{}])[0].get("enabled") is True, "versioning is off")
    soft = (bucket.get("soft_delete_policy") or [{}])[0].get("retention_duration_seconds")
    expect(soft == 7 * 86400, f"soft delete retention is {soft}")
    logging = (bucket.get("logging") or [{}])[0]
    expect(logging.get("log_bucket") == f"{BUCKET}-access-logs", "usage logs do not go to the log bucket")

    rules = bucket.get("lifecycle_rule") or []
    kinds = sorted((rule.get("action") or [{}])[0].get("type") for rule in rules)
    expect(kinds == ["AbortIncompleteMultipartUpload", "Delete"], f"lifecycle actions are {kinds}")
    for rule in rules:
        action = (rule.get("action") or [{}])[0]
        condition = (rule.get("condition") or [{}])[0]
        if action.get("type") == "Delete":
            expect(
                condition.get("with_state") == "ARCHIVED" and condition.get("days_since_noncurrent_time") == 30,
                f"a Delete rule may match live objects: {condition}",
            )

    writer = get("google_project_iam_custom_role.writer[0]")
    reader = get("google_project_iam_custom_role.reader[0]")
    expect(set(writer.get("permissions", [])) == GCS_WRITER_PERMISSIONS, "writer role permissions differ")
    expect(set(reader.get("permissions", [])) == GCS_READER_PERMISSIONS, "reader role permissions differ")

    members = {
        address: values
        for address, values in res.items()
        if address.startswith(f"{MODULE}.google_storage_bucket_iam_member.this[")
    }
    expect(len(members) == 2, f"expected 2 bucket IAM bindings, found {len(members)}")
    for address, values in members.items():
        expect(values.get("member") not in PUBLIC_MEMBERS, f"{address} grants a public principal")
        expect(values.get("bucket") == BUCKET, f"{address} is not on the store bucket")

    _check_outputs(plan, "gs", expect)
    return failures


def check(plan: dict) -> list[str]:
    failures: list[str] = []

    def expect(condition: bool, message: str) -> None:
        if not condition:
            failures.append(message)

    res = _resources(plan)
    get = lambda name: res.get(f"{MODULE}.{name}", {})  # noqa: E731

    expect(get("aws_s3_bucket.this").get("bucket") == BUCKET, "store bucket missing from the plan")
    pab = get("aws_s3_bucket_public_access_block.this")
    for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        expect(pab.get(key) is True, f"public access block {key} is not true")
    ownership = get("aws_s3_bucket_ownership_controls.this").get("rule", [{}])
    expect(ownership[0].get("object_ownership") == "BucketOwnerEnforced", "ownership is not BucketOwnerEnforced")
    versioning = get("aws_s3_bucket_versioning.this").get("versioning_configuration", [{}])
    expect(versioning[0].get("status") == "Enabled", "versioning is not enabled")
    sse = get("aws_s3_bucket_server_side_encryption_configuration.this").get("rule", [{}])
    algo = sse[0].get("apply_server_side_encryption_by_default", [{}])[0].get("sse_algorithm")
    expect(algo == "AES256", f"default encryption is {algo}, expected AES256")

    policy = json.loads(get("aws_s3_bucket_policy.this").get("policy", "{}"))
    statements = policy.get("Statement", [])
    expect(
        any(
            s["Effect"] == "Deny"
            and s.get("Principal") == "*"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            and set(_as_list(s["Resource"])) == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
            for s in statements
        ),
        "bucket policy does not deny non-TLS access to bucket and objects",
    )
    expect(all(s["Effect"] == "Deny" for s in statements), "bucket policy allows something")

    rules = get("aws_s3_bucket_lifecycle_configuration.this").get("rule", [])
    expect(
        any(r["status"] == "Enabled" and r["abort_incomplete_multipart_upload"] for r in rules),
        "no rule aborts incomplete multipart uploads",
    )
    expect(
        any(r["status"] == "Enabled" and r["noncurrent_version_expiration"] for r in rules),
        "no rule expires noncurrent versions",
    )
    for rule in rules:
        for expiration in rule.get("expiration", []):
            expect(
                expiration.get("expired_object_delete_marker") is True
                and not expiration.get("days")
                and expiration.get("date") is None,
                f"rule {rule['id']} expires current objects",
            )
        expect(not rule.get("transition"), f"rule {rule['id']} transitions objects")

    logging = get("aws_s3_bucket_logging.this[0]")
    expect(logging.get("target_bucket") == f"{BUCKET}-access-logs", "access logging does not target the log bucket")

    for role, expected, attach in (
        ("writer", WRITER_ACTIONS, 'aws_iam_role_policy_attachment.writer["ml-training"]'),
        ("reader", READER_ACTIONS, 'aws_iam_role_policy_attachment.reader["ml-ui"]'),
    ):
        doc = json.loads(get(f"aws_iam_policy.{role}[0]").get("policy", "{}"))
        stmts = doc.get("Statement", [])
        actions = {a for s in stmts if s["Effect"] == "Allow" for a in _as_list(s["Action"])}
        expect(actions == expected, f"{role} actions are {sorted(actions)}")
        for s in stmts:
            for resource in _as_list(s["Resource"]):
                expect(
                    resource == f"arn:aws:s3:::{BUCKET}"
                    or resource in {f"arn:aws:s3:::{BUCKET}/project-a/*", f"arn:aws:s3:::{BUCKET}/project-b/*"},
                    f"{role} statement {s.get('Sid')} reaches {resource}",
                )
            expect("Principal" not in s, f"{role} identity policy names a principal")
        expect(f"{MODULE}.{attach}" in res, f"{role} policy is not attached ({attach})")

    _check_outputs(plan, "s3", expect)
    return failures


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("s3", "gcs"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as handle:
        plan = json.load(handle)
    failures = check(plan) if argv[1] == "s3" else check_gcs(plan)
    for failure in failures:
        print(f"plan check FAILED: {failure}")
    if not failures:
        print(f"plan checks passed ({len(_resources(plan))} planned resources)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
