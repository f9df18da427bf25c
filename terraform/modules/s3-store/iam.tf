# Least-privilege identity policies for the two groups of principals.
#
# Writers log runs: create (PutObject; conditional writes with
# If-None-Match: * need no extra action), read (GET, ranged GET and HEAD are
# all s3:GetObject), list, delete (the store's garbage collection of folded
# log objects) and multipart uploads of large artifacts. Readers only browse
# the UI: read and list.

locals {
  policy_name_prefix = coalesce(var.iam_policy_name_prefix, "mlflow-bucket-${var.bucket_name}")

  # s3:prefix values a ListBucket request may carry: the project folder itself
  # and anything below it.
  list_prefixes    = flatten([for p in var.projects : [p, "${p}/*"]])
  object_resources = [for p in var.projects : "${local.bucket_arn}/${p}/*"]

  writer_statements = [
    {
      Sid      = "BucketLocation"
      Effect   = "Allow"
      Action   = ["s3:GetBucketLocation"]
      Resource = [local.bucket_arn]
    },
    {
      Sid       = "ListProjectPrefixes"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [local.bucket_arn]
      Condition = { StringLike = { "s3:prefix" = local.list_prefixes } }
    },
    {
      Sid    = "ReadWriteProjectObjects"
      Effect = "Allow"
      Action = [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
      ]
      Resource = local.object_resources
    },
  ]

  reader_statements = [
    {
      Sid      = "BucketLocation"
      Effect   = "Allow"
      Action   = ["s3:GetBucketLocation"]
      Resource = [local.bucket_arn]
    },
    {
      Sid       = "ListProjectPrefixes"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [local.bucket_arn]
      Condition = { StringLike = { "s3:prefix" = local.list_prefixes } }
    },
    {
      Sid      = "ReadProjectObjects"
      Effect   = "Allow"
      Action   = ["s3:GetObject"]
      Resource = local.object_resources
    },
  ]

  # With SSE-KMS, S3 calls KMS on the caller's behalf: writers need a data key
  # for new objects (and Decrypt for multipart uploads and reads), readers
  # only Decrypt.
  writer_kms_statements = var.kms_key_arn == null ? [] : [
    {
      Sid      = "UseBucketKmsKey"
      Effect   = "Allow"
      Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
      Resource = [var.kms_key_arn]
    },
  ]
  reader_kms_statements = var.kms_key_arn == null ? [] : [
    {
      Sid      = "UseBucketKmsKey"
      Effect   = "Allow"
      Action   = ["kms:Decrypt"]
      Resource = [var.kms_key_arn]
    },
  ]

  writer_policy = {
    Version   = "2012-10-17"
    Statement = concat(local.writer_statements, local.writer_kms_statements)
  }
  reader_policy = {
    Version   = "2012-10-17"
    Statement = concat(local.reader_statements, local.reader_kms_statements)
  }
}

resource "aws_iam_policy" "writer" {
  count = var.create_iam_policies ? 1 : 0

  name        = "${local.policy_name_prefix}-writer"
  path        = var.iam_policy_path
  description = "mlflow-bucket writers: create, read, list and delete MLflow objects under the project prefixes of s3://${var.bucket_name}."
  policy      = jsonencode(local.writer_policy)
  tags        = local.tags
}

resource "aws_iam_policy" "reader" {
  count = var.create_iam_policies ? 1 : 0

  name        = "${local.policy_name_prefix}-reader"
  path        = var.iam_policy_path
  description = "mlflow-bucket readers: read and list MLflow objects under the project prefixes of s3://${var.bucket_name}."
  policy      = jsonencode(local.reader_policy)
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "writer" {
  for_each = var.create_iam_policies ? toset(var.writer_role_names) : toset([])

  role       = each.value
  policy_arn = aws_iam_policy.writer[0].arn
}

resource "aws_iam_role_policy_attachment" "reader" {
  for_each = var.create_iam_policies ? toset(var.reader_role_names) : toset([])

  role       = each.value
  policy_arn = aws_iam_policy.reader[0].arn
}
