variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the bucket."
}

variable "bucket_name" {
  type        = string
  description = "Globally unique name of the team's MLflow bucket."
  default     = "example-team-mlflow"
}

variable "location" {
  type        = string
  description = "Bucket location (region, dual-region or multi-region)."
  default     = "EU"
}

variable "team" {
  type        = string
  description = "Team label put on the buckets."
  default     = "ml-platform"
}

variable "writers" {
  type        = list(string)
  description = "IAM principals that log runs, e.g. group:ml-writers@example.com."
  default     = []
}

variable "readers" {
  type        = list(string)
  description = "IAM principals that only browse the MLflow UI."
  default     = []
}
