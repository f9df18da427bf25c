# Offline tests of the gcs-store module: `terraform test` with a mocked Google
# provider, so no credentials or network are needed. check.sh runs them only
# when a filesystem mirror holds the hashicorp/google provider.

mock_provider "google" {}

variables {
  project_id  = "team-ml-prod"
  bucket_name = "team-mlflow-store"
  location    = "EU"
  projects    = ["project-a", "team-b/project-c"]
  writers     = ["group:ml-writers@example.com", "serviceAccount:trainer@team-ml-prod.iam.gserviceaccount.com"]
  readers     = ["group:ml-readers@example.com"]
}

run "bucket_is_private_and_recoverable" {
  command = plan

  assert {
    condition     = google_storage_bucket.this.uniform_bucket_level_access == true
    error_message = "Uniform bucket-level access must be on."
  }

  assert {
    condition     = google_storage_bucket.this.public_access_prevention == "enforced"
    error_message = "Public access prevention must be enforced."
  }

  assert {
    condition     = one(google_storage_bucket.this.versioning).enabled == true
    error_message = "Versioning must be on by default."
  }

  assert {
    condition     = one(google_storage_bucket.this.soft_delete_policy).retention_duration_seconds == 7 * 86400
    error_message = "Soft delete must keep deleted objects 7 days by default."
  }
}

run "lifecycle_only_touches_noncurrent_versions_and_uploads" {
  command = plan

  assert {
    condition = toset([for r in google_storage_bucket.this.lifecycle_rule : one(r.action).type]) == toset([
      "Delete", "AbortIncompleteMultipartUpload",
    ])
    error_message = "Expected exactly a noncurrent-version Delete rule and an abort-multipart rule."
  }

  assert {
    condition = alltrue([
      for r in google_storage_bucket.this.lifecycle_rule :
      one(r.condition).with_state == "ARCHIVED" && one(r.condition).days_since_noncurrent_time == 30
      if one(r.action).type == "Delete"
    ])
    error_message = "Delete rules must only match noncurrent (ARCHIVED) versions, 30 days after they became noncurrent."
  }
}

run "custom_roles_hold_exactly_the_store_permissions" {
  command = plan

  assert {
    condition = toset(google_project_iam_custom_role.writer[0].permissions) == toset([
      "storage.buckets.get", "storage.objects.create", "storage.objects.delete",
      "storage.objects.get", "storage.objects.list",
    ])
    error_message = "The writer role must hold exactly buckets.get and objects create/get/list/delete."
  }

  assert {
    condition = toset(google_project_iam_custom_role.reader[0].permissions) == toset([
      "storage.buckets.get", "storage.objects.get", "storage.objects.list",
    ])
    error_message = "The reader role must only read and list."
  }

  assert {
    condition = toset(keys(google_storage_bucket_iam_member.this)) == toset([
      "writer/custom/group:ml-writers@example.com",
      "writer/custom/serviceAccount:trainer@team-ml-prod.iam.gserviceaccount.com",
      "reader/custom/group:ml-readers@example.com",
    ])
    error_message = "Each writer and reader must get exactly one binding on the bucket."
  }
}

run "predefined_roles" {
  command = plan

  variables {
    iam_mode = "predefined"
  }

  assert {
    condition     = length(google_project_iam_custom_role.writer) == 0 && length(google_project_iam_custom_role.reader) == 0
    error_message = "No custom role may be created in predefined mode."
  }

  assert {
    condition = toset([for k, b in google_storage_bucket_iam_member.this : b.role if startswith(k, "reader/")]) == toset([
      "roles/storage.objectViewer", "roles/storage.legacyBucketReader",
    ])
    error_message = "Readers must get objectViewer and legacyBucketReader only."
  }

  assert {
    condition = toset([for k, b in google_storage_bucket_iam_member.this : b.role if startswith(k, "writer/")]) == toset([
      "roles/storage.objectUser", "roles/storage.legacyBucketReader",
    ])
    error_message = "Writers must get objectUser and legacyBucketReader only."
  }
}

run "outputs_give_uris_and_snippets" {
  command = plan

  assert {
    condition = output.tracking_uris == {
      "project-a"        = "gs://team-mlflow-store/project-a"
      "team-b/project-c" = "gs://team-mlflow-store/team-b/project-c"
    }
    error_message = "tracking_uris must map each prefix to gs://bucket/prefix."
  }

  assert {
    condition     = output.config_snippets["project-a"] == "[tool.mlflow-bucket]\nuri = \"gs://team-mlflow-store/project-a\"\n"
    error_message = "config_snippets must hold a [tool.mlflow-bucket] table with the project's uri."
  }

  assert {
    condition     = google_storage_bucket.logs[0].name == "team-mlflow-store-access-logs"
    error_message = "A dedicated access log bucket must be created by default."
  }
}

run "rejects_public_principals" {
  command = plan

  variables {
    writers = ["allUsers"]
    readers = ["allAuthenticatedUsers"]
  }

  expect_failures = [
    var.writers,
    var.readers,
  ]
}

run "rejects_invalid_names_and_retention" {
  command = plan

  variables {
    bucket_name                = "google-mlflow"
    projects                   = ["project-a/"]
    soft_delete_retention_days = 3
  }

  expect_failures = [
    var.bucket_name,
    var.projects,
    var.soft_delete_retention_days,
  ]
}
