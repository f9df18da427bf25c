# Offline tests of the s3-store module: `terraform test` with a mocked AWS
# provider, so no credentials or network are needed.

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

variables {
  bucket_name       = "team-mlflow-store"
  projects          = ["project-a", "team-b/project-c"]
  writer_role_names = ["ml-training"]
  reader_role_names = ["ml-ui"]
}

run "bucket_is_private_versioned_and_encrypted" {
  command = plan

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.this.block_public_acls,
      aws_s3_bucket_public_access_block.this.block_public_policy,
      aws_s3_bucket_public_access_block.this.ignore_public_acls,
      aws_s3_bucket_public_access_block.this.restrict_public_buckets,
    ])
    error_message = "All four public access block settings must be on."
  }

  assert {
    condition     = aws_s3_bucket_ownership_controls.this.rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled (BucketOwnerEnforced)."
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "Versioning must be enabled."
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "SSE-S3 must be the default encryption."
  }
}

run "bucket_policy_denies_plain_http" {
  command = plan

  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.this.policy).Statement :
      s.Effect == "Deny" && s.Principal == "*" && s.Action == "s3:*" &&
      try(s.Condition.Bool["aws:SecureTransport"], "") == "false" &&
      contains(s.Resource, "arn:aws:s3:::team-mlflow-store") &&
      contains(s.Resource, "arn:aws:s3:::team-mlflow-store/*")
    ])
    error_message = "The bucket policy must deny every request with aws:SecureTransport = false."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_s3_bucket_policy.this.policy).Statement : s.Effect == "Deny"
    ])
    error_message = "The store bucket policy must only deny, never allow."
  }
}

run "lifecycle_never_expires_current_objects" {
  command = plan

  assert {
    condition = anytrue([
      for r in aws_s3_bucket_lifecycle_configuration.this.rule :
      r.status == "Enabled" && try(r.abort_incomplete_multipart_upload[0].days_after_initiation, 0) == 7
    ])
    error_message = "Incomplete multipart uploads must be aborted after 7 days by default."
  }

  assert {
    condition = anytrue([
      for r in aws_s3_bucket_lifecycle_configuration.this.rule :
      r.status == "Enabled" && try(r.noncurrent_version_expiration[0].noncurrent_days, 0) == 30
    ])
    error_message = "Noncurrent versions must expire after 30 days by default."
  }

  assert {
    condition = alltrue(flatten([
      for r in aws_s3_bucket_lifecycle_configuration.this.rule : [
        for e in r.expiration : e.expired_object_delete_marker == true
      ]
    ]))
    error_message = "The only expiration allowed is the removal of expired delete markers (AWS refuses it together with days or date): no rule may expire current objects."
  }
}

run "writers_and_readers_get_least_privilege" {
  command = plan

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_policy.writer[0].policy).Statement : s.Action
      ])) == toset([
      "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetBucketLocation", "s3:GetObject",
      "s3:ListBucket", "s3:ListMultipartUploadParts", "s3:PutObject",
    ])
    error_message = "Writers must get exactly the object create/read/list/delete and multipart actions."
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_policy.reader[0].policy).Statement : s.Action
    ])) == toset(["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"])
    error_message = "Readers must only read and list."
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_policy.writer[0].policy).Statement : s.Resource if contains(s.Action, "s3:PutObject")
      ])) == toset([
      "arn:aws:s3:::team-mlflow-store/project-a/*",
      "arn:aws:s3:::team-mlflow-store/team-b/project-c/*",
    ])
    error_message = "Object actions must be scoped to the project prefixes."
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_policy.reader[0].policy).Statement : s.Condition["StringLike"]["s3:prefix"] if contains(s.Action, "s3:ListBucket")
      ])) == toset([
      "project-a", "project-a/*", "team-b/project-c", "team-b/project-c/*",
    ])
    error_message = "Listing must be scoped to the project prefixes."
  }

  assert {
    condition     = keys(aws_iam_role_policy_attachment.writer) == ["ml-training"] && keys(aws_iam_role_policy_attachment.reader) == ["ml-ui"]
    error_message = "The policies must be attached to the given roles."
  }
}

run "outputs_give_uris_and_snippets" {
  command = plan

  assert {
    condition = output.tracking_uris == {
      "project-a"        = "s3://team-mlflow-store/project-a"
      "team-b/project-c" = "s3://team-mlflow-store/team-b/project-c"
    }
    error_message = "tracking_uris must map each prefix to s3://bucket/prefix."
  }

  assert {
    condition     = output.config_snippets["project-a"] == "[tool.mlflow-bucket]\nuri = \"s3://team-mlflow-store/project-a\"\n"
    error_message = "config_snippets must hold a [tool.mlflow-bucket] table with the project's uri."
  }
}

run "access_logs_go_to_a_dedicated_bucket" {
  command = plan

  assert {
    condition     = aws_s3_bucket.logs[0].bucket == "team-mlflow-store-access-logs"
    error_message = "A dedicated log bucket must be created by default."
  }

  assert {
    condition     = aws_s3_bucket_logging.this[0].target_prefix == "s3-access-logs/team-mlflow-store/"
    error_message = "Access logs must be written under s3-access-logs/<bucket>/."
  }

  assert {
    condition = anytrue([
      for s in jsondecode(aws_s3_bucket_policy.logs[0].policy).Statement :
      s.Effect == "Allow" && s.Principal == { Service = "logging.s3.amazonaws.com" } && s.Action == "s3:PutObject"
    ])
    error_message = "The log bucket must let the S3 logging service deliver logs."
  }
}

run "kms_key_switches_to_sse_kms" {
  command = plan

  variables {
    kms_key_arn       = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"
    access_log_bucket = "central-access-logs"
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    error_message = "A KMS key must switch the bucket to SSE-KMS."
  }

  assert {
    condition = anytrue([
      for s in jsondecode(aws_iam_policy.writer[0].policy).Statement :
      contains(s.Action, "kms:GenerateDataKey") && s.Resource == ["arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"]
    ])
    error_message = "Writers must be able to use the KMS key."
  }

  assert {
    condition     = length(aws_s3_bucket.logs) == 0 && aws_s3_bucket_logging.this[0].target_bucket == "central-access-logs"
    error_message = "An existing log bucket must be used instead of creating one."
  }
}

run "rejects_invalid_names_and_prefixes" {
  command = plan

  variables {
    bucket_name = "Team.Bucket"
    projects    = ["/leading-slash", "project-a", "project-a/nested"]
  }

  expect_failures = [
    var.bucket_name,
    var.projects,
  ]
}

run "rejects_out_of_range_retention" {
  command = plan

  variables {
    noncurrent_version_expiration_days     = 0
    abort_incomplete_multipart_upload_days = 1000
  }

  expect_failures = [
    var.noncurrent_version_expiration_days,
    var.abort_incomplete_multipart_upload_days,
  ]
}
