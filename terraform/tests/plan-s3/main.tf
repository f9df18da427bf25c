# Offline plan root used by terraform/check.sh: the same module call as
# examples/s3, with fake credentials and every AWS API lookup switched off so
# that `terraform plan` runs without network or account. Never apply it.

terraform {
  required_version = ">= 1.7.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.46.0, < 7.0.0"
    }
  }
}

provider "aws" {
  region                      = "eu-west-1"
  access_key                  = "offline-plan-fake-key"
  secret_key                  = "offline-plan-fake-secret"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}

module "mlflow_store" {
  source = "../../modules/s3-store"

  bucket_name       = "example-team-mlflow"
  projects          = ["project-a", "project-b"]
  writer_role_names = ["ml-training"]
  reader_role_names = ["ml-ui"]
}

output "tracking_uris" {
  description = "MLflow tracking URI per project."
  value       = module.mlflow_store.tracking_uris
}

output "config_snippets" {
  description = "Per project, the [tool.mlflow-bucket] TOML for `mlflow-bucket init`."
  value       = module.mlflow_store.config_snippets
}

output "writer_policy_json" {
  description = "Writer IAM policy document."
  value       = module.mlflow_store.writer_policy_json
}

output "reader_policy_json" {
  description = "Reader IAM policy document."
  value       = module.mlflow_store.reader_policy_json
}
