output "bucket_name" {
  description = "Name of the MLflow bucket."
  value       = module.mlflow_store.bucket_name
}

output "tracking_uris" {
  description = "MLflow tracking URI per project."
  value       = module.mlflow_store.tracking_uris
}

output "config_snippets" {
  description = "Per project, the [tool.mlflow-bucket] TOML for `mlflow-bucket init`."
  value       = module.mlflow_store.config_snippets
}

output "writer_roles" {
  description = "IAM roles granted to the writers."
  value       = module.mlflow_store.writer_roles
}
