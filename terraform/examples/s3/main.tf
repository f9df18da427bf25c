provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "team" = var.team
    }
  }
}

# One bucket for the team, one prefix per MLflow project.
module "mlflow_store" {
  source = "../../modules/s3-store"

  bucket_name = var.bucket_name
  projects    = ["project-a", "project-b"]

  noncurrent_version_expiration_days     = 30
  abort_incomplete_multipart_upload_days = 7

  # Existing roles: the training jobs log runs, the UI only reads.
  writer_role_names = var.writer_role_names
  reader_role_names = var.reader_role_names

  tags = {
    "team" = var.team
  }
}
