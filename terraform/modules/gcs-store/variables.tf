variable "project_id" {
  type        = string
  description = "Google Cloud project that owns the bucket (and the custom IAM roles when iam_mode is \"custom\")."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  type        = string
  description = "Name of the GCS bucket that holds the MLflow data of every project. 3-63 characters: lowercase letters, digits, hyphens and underscores, starting and ending with a letter or digit. Dotted (domain) names are rejected: they need domain verification."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lowercase letters, digits, '-' and '_', starting and ending with a letter or digit."
  }

  validation {
    condition     = !startswith(var.bucket_name, "goog") && length(regexall("google|g00gle", var.bucket_name)) == 0
    error_message = "bucket_name must not start with \"goog\" or contain \"google\" (reserved by Cloud Storage)."
  }
}

variable "location" {
  type        = string
  description = "Bucket location: a region (\"europe-west1\"), dual-region (\"EUR4\") or multi-region (\"EU\")."

  validation {
    condition     = can(regex("^[A-Za-z0-9-]+$", var.location))
    error_message = "location must be a Cloud Storage location name such as EU, US, EUR4 or europe-west1."
  }
}

variable "storage_class" {
  type        = string
  description = "Default storage class of new objects. The store reads its logs and metadata often: keep STANDARD unless you know better."
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.storage_class)
    error_message = "storage_class must be STANDARD, NEARLINE, COLDLINE or ARCHIVE."
  }
}

variable "projects" {
  type        = list(string)
  description = "Project prefixes inside the bucket, one per MLflow project (for example [\"project-a\", \"team/project-b\"]). Each becomes the tracking URI gs://<bucket>/<prefix>. Segments are lowercase letters, digits, '.', '_' or '-', start with a letter or digit, and are separated by single slashes; no leading or trailing slash."

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

variable "versioning_enabled" {
  type        = bool
  description = "Keep object versioning on: an object deleted by the store's garbage collection stays as a noncurrent version for noncurrent_version_retention_days."
  default     = true
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days after which a lifecycle rule deletes noncurrent object versions (what the store's garbage collection leaves behind when versioning is on). Live (current) objects are never matched."
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && var.noncurrent_version_retention_days <= 3650 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number from 1 to 3650."
  }
}

variable "soft_delete_retention_days" {
  type        = number
  description = "Soft delete retention in days: deleted (and, with versioning, expired) objects stay restorable this long. 0 turns soft delete off; otherwise 7 to 90 as Cloud Storage allows."
  default     = 7

  validation {
    condition = floor(var.soft_delete_retention_days) == var.soft_delete_retention_days && (
      var.soft_delete_retention_days == 0 || (var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 90)
    )
    error_message = "soft_delete_retention_days must be 0 (off) or a whole number from 7 to 90."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  type        = number
  description = "Days after which incomplete XML API multipart uploads are aborted by a lifecycle rule (frees their parts; never touches finished objects)."
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number from 1 to 365."
  }
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) used as the bucket's default CMEK. null (the default) keeps Google-managed encryption."
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be null or projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>."
  }
}

variable "grant_kms_to_service_agent" {
  type        = bool
  description = "When kms_key_name is set, grant the project's Cloud Storage service agent roles/cloudkms.cryptoKeyEncrypterDecrypter on the key (needed before the bucket can use it). Set false if the key's IAM is managed elsewhere."
  default     = true
}

variable "access_log_bucket" {
  type        = string
  description = "Name of an existing bucket that receives the usage (access) logs; it must let group:cloud-storage-analytics@google.com create objects. null (the default) makes the module create <bucket_name>-access-logs, unless create_access_log_bucket is false."
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be null or a valid bucket name."
  }
}

variable "create_access_log_bucket" {
  type        = bool
  description = "When access_log_bucket is null, create a dedicated log bucket <bucket_name>-access-logs (true, the default) or turn access logging off (false, not recommended)."
  default     = true
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

variable "writers" {
  type        = list(string)
  description = "IAM principals that log runs (create, read, list and delete objects), such as \"group:ml-team@example.com\" or \"serviceAccount:trainer@p.iam.gserviceaccount.com\". allUsers and allAuthenticatedUsers are always rejected."
  default     = []

  validation {
    condition = alltrue([
      for m in var.writers : !contains(["allusers", "allauthenticatedusers"], lower(m)) && length(regexall("goog/public:", m)) == 0
    ])
    error_message = "writers must never contain allUsers, allAuthenticatedUsers or principalSet://goog/public:all: the bucket is private."
  }

  validation {
    condition = alltrue([
      for m in var.writers : can(regex("^((user|group|serviceAccount|domain):[^\\s:]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", m))
    ])
    error_message = "Each writer must be an IAM member such as user:, group:, serviceAccount:, domain: or a principal:// / principalSet:// workforce or workload identity."
  }
}

variable "readers" {
  type        = list(string)
  description = "IAM principals that only browse the MLflow UI (read and list objects). allUsers and allAuthenticatedUsers are always rejected."
  default     = []

  validation {
    condition = alltrue([
      for m in var.readers : !contains(["allusers", "allauthenticatedusers"], lower(m)) && length(regexall("goog/public:", m)) == 0
    ])
    error_message = "readers must never contain allUsers, allAuthenticatedUsers or principalSet://goog/public:all: the bucket is private."
  }

  validation {
    condition = alltrue([
      for m in var.readers : can(regex("^((user|group|serviceAccount|domain):[^\\s:]+|principal(Set)?://iam\\.googleapis\\.com/\\S+)$", m))
    ])
    error_message = "Each reader must be an IAM member such as user:, group:, serviceAccount:, domain: or a principal:// / principalSet:// workforce or workload identity."
  }
}

variable "iam_mode" {
  type        = string
  description = "\"custom\" (default): create two project custom roles with exactly the permissions the store needs (writers: storage.buckets.get and storage.objects.create/get/list/delete; readers: storage.buckets.get and storage.objects.get/list); needs roles/iam.roleAdmin on the project. \"predefined\": grant roles/storage.objectUser (writers) or roles/storage.objectViewer (readers), each plus roles/storage.legacyBucketReader for storage.buckets.get."
  default     = "custom"

  validation {
    condition     = contains(["custom", "predefined"], var.iam_mode)
    error_message = "iam_mode must be \"custom\" or \"predefined\"."
  }
}

variable "custom_role_id_prefix" {
  type        = string
  description = "Prefix of the custom role IDs (<prefix>_writer and <prefix>_reader) when iam_mode is \"custom\". null (the default) derives \"mlflowBucket_<bucket name with - as _>\". A deleted custom role ID cannot be reused for several weeks, so change the prefix when recreating."
  default     = null

  validation {
    condition     = var.custom_role_id_prefix == null || can(regex("^[a-zA-Z0-9_.]{3,57}$", var.custom_role_id_prefix))
    error_message = "custom_role_id_prefix must be null or 3-57 characters of letters, digits, '_' and '.'."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Allow `terraform destroy` to delete the bucket even when it still holds objects. Keep false for real data."
  default     = false
}

variable "labels" {
  type        = map(string)
  description = "Labels added to the buckets (merged over the module's own managed-by/app labels). Keys: lowercase letter first, then lowercase letters, digits, '_' or '-'."
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Label keys must match ^[a-z][a-z0-9_-]{0,62}$ and values ^[a-z0-9_-]{0,63}$."
  }
}
