output "bucket_name" {
  description = "Name of the store bucket."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the store bucket."
  value       = aws_s3_bucket.this.arn
}

output "tracking_uris" {
  description = "MLflow tracking URI per project prefix: s3://<bucket>/<prefix>."
  value       = local.tracking_uris
}

output "config_snippets" {
  description = "Per project prefix, a ready TOML snippet ([tool.mlflow-bucket] with uri = \"s3://<bucket>/<prefix>\") for `mlflow-bucket init`."
  value       = local.config_snippets
}

output "writer_policy_arn" {
  description = "ARN of the writer IAM policy (null when create_iam_policies is false)."
  value       = one(aws_iam_policy.writer[*].arn)
}

output "reader_policy_arn" {
  description = "ARN of the reader IAM policy (null when create_iam_policies is false)."
  value       = one(aws_iam_policy.reader[*].arn)
}

output "writer_policy_json" {
  description = "JSON of the writer IAM policy document, for attaching it elsewhere (for example to SSO permission sets)."
  value       = jsonencode(local.writer_policy)
}

output "reader_policy_json" {
  description = "JSON of the reader IAM policy document, for attaching it elsewhere."
  value       = jsonencode(local.reader_policy)
}

output "bucket_policy_json" {
  description = "JSON of the bucket policy applied to the store bucket (TLS-only access)."
  value       = jsonencode(local.bucket_policy)
}

output "access_log_bucket" {
  description = "Bucket receiving the server access logs of the store bucket (null when logging is off)."
  value       = local.access_log_bucket
}

output "access_log_prefix" {
  description = "Key prefix of the access log objects in access_log_bucket."
  value       = local.access_log_prefix
}
