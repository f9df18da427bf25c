provider "google" {
  project = var.project_id
}

# One bucket for the team, one prefix per MLflow project.
module "mlflow_store" {
  source = "../../modules/gcs-store"

  project_id  = var.project_id
  bucket_name = var.bucket_name
  location    = var.location
  projects    = ["project-a", "project-b"]

  versioning_enabled                = true
  noncurrent_version_retention_days = 30
  soft_delete_retention_days        = 7

  writers = var.writers
  readers = var.readers

  labels = {
    "team" = var.team
  }
}
