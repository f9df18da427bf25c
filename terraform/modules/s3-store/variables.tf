variable "bucket_name" {
  type        = string
  description = "Name of the S3 bucket that holds the MLflow data of every project. 3-63 characters: lowercase letters, digits and hyphens, starting and ending with a letter or digit. Dots are rejected because they break TLS certificate matching for virtual-hosted-style HTTPS requests."

  validation {
    condition     = length(var.bucket_name) >= 3 && length(var.bucket_name) <= 63
    error_message = "bucket_name must be 3 to 63 characters long."
  }

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name may contain only lowercase letters, digits and hyphens, and must start and end with a letter or digit (dots are not allowed: they break TLS for virtual-hosted-style requests)."
  }

  validation {
    condition = !anytrue([
      for p in ["xn--", "sthree-", "amzn-s3-demo-"] : startswith(var.bucket_name, p)
      ]) && !anytrue([
      for s in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"] : endswith(var.bucket_name, s)
    ])
    error_message = "bucket_name uses a prefix (xn--, sthree-, amzn-s3-demo-) or suffix (-s3alias, --ol-s3, --x-s3, --table-s3) that AWS reserves."
  }
}

variable "projects" {
  type        = list(string)
  description = "Project prefixes inside the bucket, one per MLflow project (for example [\"project-a\", \"team/project-b\"]). Each becomes the tracking URI s3://<bucket>/<prefix>. Segments are lowercase letters, digits, '.', '_' or '-', start with a letter or digit, and are separated by single slashes; no leading or trailing slash."

  validation {
    condition     = length(var.projects) > 0
    error_message = "projects must name at least one project prefix."
  }

  validation {
    condition = alltrue([
      for p in var.projects : can(regex("^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$", p)) && length(p) <= 256
    ])
    error_message = "Each project prefix must be at most 256 characters of slash-separated segments made of lowercase letters, digits, '.', '_' or '-', each starting with a letter or digit, with no leading, trailing or double slash."
  }

  validation {
    condition     = length(distinct(var.projects)) == length(var.projects)
    error_message = "Project prefixes must be unique."
  }

  validation {
    condition = alltrue(flatten([
      for a in var.projects : [for b in var.projects : a == b || !startswith(b, "${a}/")]
    ]))
    error_message = "A project prefix must not lie inside another one (for example \"team\" and \"team/project-a\"): the store of the outer project would see the inner project's objects."
  }
}

variable "noncurrent_version_expiration_days" {
  type        = number
  description = "Days a noncurrent object version (left behind when the store's garbage collection deletes a folded log object) is kept before S3 expires it. This is the team's window to recover deleted objects."
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 3650 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number from 1 to 3650."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  type        = number
  description = "Days after which S3 aborts multipart uploads (large artifacts) that were started but never completed, freeing their parts."
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number from 1 to 365."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of a customer managed KMS key for SSE-KMS (with an S3 bucket key). null (the default) uses SSE-S3 (AES256). The IAM policies then also grant the kms:Decrypt / kms:GenerateDataKey calls the store needs on this key."
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); aliases are not accepted because IAM policies need the key ARN."
  }
}

variable "access_log_bucket" {
  type        = string
  description = "Name of an existing bucket that receives S3 server access logs. Its bucket policy must already allow logging.s3.amazonaws.com to write under access_log_prefix. null (the default) makes the module create a dedicated log bucket named <bucket_name>-access-logs, unless create_access_log_bucket is false."
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be null or a valid S3 bucket name."
  }
}

variable "create_access_log_bucket" {
  type        = bool
  description = "When access_log_bucket is null, create a dedicated log bucket <bucket_name>-access-logs (true, the default) or turn server access logging off (false, not recommended)."
  default     = true
}

variable "access_log_prefix" {
  type        = string
  description = "Key prefix for the access log objects in the log bucket. null (the default) means \"s3-access-logs/<bucket_name>/\"."
  default     = null

  validation {
    condition     = var.access_log_prefix == null || can(regex("^[A-Za-z0-9!_.*'()/-]*/$", var.access_log_prefix))
    error_message = "access_log_prefix must be null or a key prefix ending in '/'."
  }
}

variable "access_log_retention_days" {
  type        = number
  description = "Days the module-created log bucket keeps access log objects. Ignored when access_log_bucket names an existing bucket."
  default     = 365

  validation {
    condition     = var.access_log_retention_days >= 1 && var.access_log_retention_days <= 3650 && floor(var.access_log_retention_days) == var.access_log_retention_days
    error_message = "access_log_retention_days must be a whole number from 1 to 3650."
  }
}

variable "create_iam_policies" {
  type        = bool
  description = "Create the writer and reader aws_iam_policy resources. When false, only their JSON documents are output (writer_role_names and reader_role_names must then be empty)."
  default     = true
}

variable "iam_policy_name_prefix" {
  type        = string
  description = "Name prefix of the IAM policies; they are named <prefix>-writer and <prefix>-reader. null (the default) means \"mlflow-bucket-<bucket_name>\"."
  default     = null

  validation {
    condition     = var.iam_policy_name_prefix == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,120}$", var.iam_policy_name_prefix))
    error_message = "iam_policy_name_prefix must be null or 1-120 characters of letters, digits and +=,.@_-."
  }
}

variable "iam_policy_path" {
  type        = string
  description = "IAM path of the policies."
  default     = "/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9+=,.@_-]+/)*$", var.iam_policy_path))
    error_message = "iam_policy_path must start and end with '/'."
  }
}

variable "writer_role_names" {
  type        = list(string)
  description = "Names of existing IAM roles (for example the CI or training job roles) that log runs: the writer policy (create/read/list/delete objects under the project prefixes) is attached to each."
  default     = []

  validation {
    condition     = alltrue([for r in var.writer_role_names : can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", r))])
    error_message = "writer_role_names must be IAM role names (not ARNs): 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "reader_role_names" {
  type        = list(string)
  description = "Names of existing IAM roles that only browse the MLflow UI: the reader policy (read/list under the project prefixes) is attached to each."
  default     = []

  validation {
    condition     = alltrue([for r in var.reader_role_names : can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", r))])
    error_message = "reader_role_names must be IAM role names (not ARNs): 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Allow `terraform destroy` to delete the bucket even when it still holds objects. Keep false for real data."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every taggable resource (merged over the module's own managed-by/app tags)."
  default     = {}
}
