# Offline plan root used by terraform/check.sh when a mirror holds the google
# provider: the same module call as examples/gcs, with a fake access token so
# that `terraform plan` runs without network or account. Never apply it.

terraform {
  required_version = ">= 1.7.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 8.0.0"
    }
  }
}

provider "google" {
  project      = "offline-plan-project"
  region       = "europe-west1"
  access_token = "offline-plan-fake-token"
}

module "mlflow_store" {
  source = "../../modules/gcs-store"

  project_id  = "offline-plan-project"
  bucket_name = "example-team-mlflow"
  location    = "EU"
  projects    = ["project-a", "project-b"]
  writers     = ["group:ml-writers@example.com"]
  readers     = ["group:ml-readers@example.com"]
}

output "tracking_uris" {
  description = "MLflow tracking URI per project."
  value       = module.mlflow_store.tracking_uris
}

output "config_snippets" {
  description = "Per project, the [tool.mlflow-bucket] TOML for `mlflow-bucket init`."
  value       = module.mlflow_store.config_snippets
}
