data "aws_partition" "current" {}

locals {
  bucket_arn = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"

  tags = merge(
    {
      "managed-by" = "terraform"
      "app"        = "mlflow-bucket"
    },
    var.tags,
  )

  # Tracking URI and `mlflow-bucket init` snippet per project prefix.
  tracking_uris = { for p in var.projects : p => "s3://${aws_s3_bucket.this.bucket}/${p}" }
  config_snippets = {
    for p, uri in local.tracking_uris : p => <<-EOT
      [tool.mlflow-bucket]
      uri = "${uri}"
    EOT
  }

  # Statements every bucket policy of this module carries: refuse plain HTTP
  # and TLS older than 1.2, for every principal.
  tls_deny_statements = [
    {
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    },
    {
      Sid       = "DenyOutdatedTls"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
      Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
    },
  ]

  bucket_policy = {
    Version   = "2012-10-17"
    Statement = local.tls_deny_statements
  }
}

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_144: Cross-region replication is a disaster-recovery choice left to the team; versioning plus noncurrent retention already protects against deletes.
  # checkov:skip=CKV2_AWS_62: The store polls its own log objects; S3 event notifications have no consumer.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = local.tags

  lifecycle {
    precondition {
      condition     = var.create_iam_policies || length(var.writer_role_names) + length(var.reader_role_names) == 0
      error_message = "writer_role_names and reader_role_names need create_iam_policies = true."
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = jsonencode(local.bucket_policy)

  # A bucket policy is refused while the public access block is being set up.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Lifecycle that matches the store's own garbage collection: the store deletes
# folded log objects itself; with versioning on, each delete leaves a
# noncurrent version, which expires here after the retention window. No rule
# expires a current object: live data is never deleted by S3.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"

    filter {}

    # Only removes a delete marker once no noncurrent version is left behind
    # it; it never touches a current object.
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  count = local.access_logging_enabled ? 1 : 0

  bucket        = aws_s3_bucket.this.id
  target_bucket = local.access_log_bucket
  target_prefix = local.access_log_prefix

  # The created log bucket must exist and accept deliveries first.
  depends_on = [aws_s3_bucket_policy.logs, aws_s3_bucket_ownership_controls.logs]
}
