locals {
  labels = merge(
    {
      "managed-by" = "terraform"
      "app"        = "mlflow-bucket"
    },
    var.labels,
  )

  # Tracking URI and `mlflow-bucket init` snippet per project prefix.
  tracking_uris = { for p in var.projects : p => "gs://${google_storage_bucket.this.name}/${p}" }
  config_snippets = {
    for p, uri in local.tracking_uris : p => <<-EOT
      [tool.mlflow-bucket]
      uri = "${uri}"
    EOT
  }

  use_kms         = var.kms_key_name != null
  grant_kms_agent = local.use_kms && var.grant_kms_to_service_agent
}

# The Cloud Storage service agent encrypts and decrypts with the CMEK on the
# bucket's behalf, so it needs the key before the bucket can use it.
data "google_storage_project_service_account" "this" {
  count   = local.grant_kms_agent ? 1 : 0
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count         = local.grant_kms_agent ? 1 : 0
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.this[0].email_address}"
}

resource "google_storage_bucket" "this" {
  project       = var.project_id
  name          = var.bucket_name
  location      = var.location
  storage_class = var.storage_class
  force_destroy = var.force_destroy
  labels        = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = var.versioning_enabled
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_retention_days * 86400
  }

  # Lifecycle that matches the store's own garbage collection: the store
  # deletes folded log objects itself; with versioning on, each delete leaves
  # a noncurrent version, which this rule removes after the retention window.
  # No rule matches live (current) objects.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
  }

  # Aborts XML API multipart uploads that were never completed; finished
  # objects are not affected.
  lifecycle_rule {
    action {
      type = "AbortIncompleteMultipartUpload"
    }
    condition {
      age = var.abort_incomplete_multipart_upload_days
    }
  }

  dynamic "encryption" {
    for_each = local.use_kms ? [var.kms_key_name] : []
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = local.access_logging_enabled ? [1] : []
    content {
      log_bucket        = local.access_log_bucket
      log_object_prefix = local.access_log_object_prefix
    }
  }

  lifecycle {
    precondition {
      condition     = var.versioning_enabled || var.soft_delete_retention_days > 0
      error_message = "Turn on object versioning or soft delete (or both): otherwise an object deleted by mistake cannot be recovered."
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.storage_agent]
}
