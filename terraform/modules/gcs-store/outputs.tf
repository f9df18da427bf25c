output "bucket_name" {
  description = "Name of the store bucket."
  value       = google_storage_bucket.this.name
}

output "bucket_url" {
  description = "gs:// URL of the store bucket."
  value       = "gs://${google_storage_bucket.this.name}"
}

output "tracking_uris" {
  description = "MLflow tracking URI per project prefix: gs://<bucket>/<prefix>."
  value       = local.tracking_uris
}

output "config_snippets" {
  description = "Per project prefix, a ready TOML snippet ([tool.mlflow-bucket] with uri = \"gs://<bucket>/<prefix>\") for `mlflow-bucket init`."
  value       = local.config_snippets
}

output "writer_roles" {
  description = "IAM roles granted to the writers on the bucket."
  value       = values(local.writer_roles)
}

output "reader_roles" {
  description = "IAM roles granted to the readers on the bucket."
  value       = values(local.reader_roles)
}

output "access_log_bucket" {
  description = "Bucket receiving the usage (access) logs of the store bucket (null when logging is off)."
  value       = local.access_logging_enabled ? local.access_log_bucket : null
}
