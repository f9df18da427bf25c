variable "region" {
  type        = string
  description = "AWS region of the bucket."
  default     = "eu-west-1"
}

variable "bucket_name" {
  type        = string
  description = "Globally unique name of the team's MLflow bucket."
  default     = "example-team-mlflow"
}

variable "team" {
  type        = string
  description = "Team tag put on every resource."
  default     = "ml-platform"
}

variable "writer_role_names" {
  type        = list(string)
  description = "Existing IAM roles that log runs."
  default     = []
}

variable "reader_role_names" {
  type        = list(string)
  description = "Existing IAM roles that only browse the MLflow UI."
  default     = []
}
