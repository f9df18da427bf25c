terraform {
  required_version = ">= 1.7.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.46.0, < 7.0.0"
    }
  }

  # Keep the state of a real deployment in a remote backend, for example:
  # backend "s3" {
  #   bucket       = "team-terraform-state"
  #   key          = "mlflow-bucket/terraform.tfstate"
  #   region       = "eu-west-1"
  #   use_lockfile = true
  # }
}
