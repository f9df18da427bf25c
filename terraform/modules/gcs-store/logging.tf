# Usage (access) logging. Either an existing log bucket is given, or the
# module creates a dedicated one next to the store bucket.

locals {
  create_log_bucket        = var.access_log_bucket == null && var.create_access_log_bucket
  access_logging_enabled   = var.access_log_bucket != null || var.create_access_log_bucket
  log_bucket_name          = "${var.bucket_name}-access-logs"
  access_log_bucket        = local.create_log_bucket ? google_storage_bucket.logs[0].name : var.access_log_bucket
  access_log_object_prefix = var.bucket_name
}

resource "google_storage_bucket" "logs" {
  # checkov:skip=CKV_GCP_62: This is the access-log target bucket; logging it into itself would loop.
  count = local.create_log_bucket ? 1 : 0

  project       = var.project_id
  name          = local.log_bucket_name
  location      = var.location
  storage_class = "STANDARD"
  force_destroy = var.force_destroy
  labels        = merge(local.labels, { "purpose" = "access-logs" })

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  # The log bucket holds access logs, not store data: log objects are deleted
  # after the log retention window, and their noncurrent versions a day later.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = var.access_log_retention_days
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = 1
      with_state                 = "ARCHIVED"
    }
  }

  # No CMEK here even when the store bucket has one: the logs are written by
  # Cloud Storage's analytics service, and they hold no MLflow data.

  lifecycle {
    precondition {
      condition     = length(local.log_bucket_name) <= 63
      error_message = "bucket_name must be at most 51 characters when the module creates the <bucket_name>-access-logs bucket; pass access_log_bucket instead."
    }
  }
}

# Cloud Storage writes usage logs as this Google-owned group.
resource "google_storage_bucket_iam_member" "log_writer" {
  count  = local.create_log_bucket ? 1 : 0
  bucket = google_storage_bucket.logs[0].name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
