terraform {
  required_version = ">= 1.7.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0.0, < 8.0.0"
    }
  }

  # Keep the state of a real deployment in a remote backend, for example:
  # backend "gcs" {
  #   bucket = "team-terraform-state"
  #   prefix = "mlflow-bucket"
  # }
}
