# Server access logging. Either an existing log bucket is given, or the module
# creates a dedicated one next to the store bucket.

locals {
  create_log_bucket      = var.access_log_bucket == null && var.create_access_log_bucket
  access_logging_enabled = var.access_log_bucket != null || var.create_access_log_bucket
  log_bucket_name        = "${var.bucket_name}-access-logs"
  log_bucket_arn         = "arn:${data.aws_partition.current.partition}:s3:::${local.log_bucket_name}"

  # The name is used (rather than the resource's id) so that it is known at
  # plan time; aws_s3_bucket_logging.this depends on the log bucket's policy.
  access_log_bucket = var.access_log_bucket != null ? var.access_log_bucket : (
    local.create_log_bucket ? local.log_bucket_name : null
  )
  access_log_prefix = coalesce(var.access_log_prefix, "s3-access-logs/${var.bucket_name}/")

  log_bucket_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AllowS3ServerAccessLogDelivery"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${local.log_bucket_arn}/${local.access_log_prefix}*"
        Condition = { ArnLike = { "aws:SourceArn" = local.bucket_arn } }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.log_bucket_arn, "${local.log_bucket_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  }
}

resource "aws_s3_bucket" "logs" {
  # checkov:skip=CKV_AWS_18: This is the access-log target bucket; logging it into itself would loop.
  # checkov:skip=CKV_AWS_144: Access logs are audit data kept in-region; cross-region replication is left to the team.
  # checkov:skip=CKV2_AWS_62: Nothing consumes events for access log objects.
  # checkov:skip=CKV_AWS_145: S3 server access logging can only deliver to buckets encrypted with SSE-S3, not SSE-KMS.
  count = local.create_log_bucket ? 1 : 0

  bucket        = local.log_bucket_name
  force_destroy = var.force_destroy
  tags          = merge(local.tags, { "purpose" = "s3-access-logs" })

  lifecycle {
    precondition {
      condition     = length(local.log_bucket_name) <= 63
      error_message = "bucket_name must be at most 51 characters when the module creates the <bucket_name>-access-logs bucket; pass access_log_bucket instead."
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id
  policy = jsonencode(local.log_bucket_policy)

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

# The log bucket holds access logs, not store data: its objects expire after
# the log retention window.
resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = aws_s3_bucket.logs[0].id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}
