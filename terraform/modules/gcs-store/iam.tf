# Least-privilege bucket IAM for the two groups of principals.
#
# Writers log runs: create objects (ifGenerationMatch=0 creates, resumable
# uploads and compose all need storage.objects.create; compose also reads its
# sources), read (GET, ranged GET, metadata), list, and delete (the store's
# garbage collection of folded log objects and of compose parts). Readers only
# browse the UI: read and list. Both may read the bucket's metadata.

locals {
  writer_permissions = [
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
  ]
  reader_permissions = [
    "storage.buckets.get",
    "storage.objects.get",
    "storage.objects.list",
  ]

  # Predefined roles used when iam_mode = "predefined". legacyBucketReader
  # adds storage.buckets.get (and objects.list), which the object roles lack.
  writer_predefined_roles = ["roles/storage.objectUser", "roles/storage.legacyBucketReader"]
  reader_predefined_roles = ["roles/storage.objectViewer", "roles/storage.legacyBucketReader"]

  custom_roles   = var.iam_mode == "custom"
  role_id_prefix = coalesce(var.custom_role_id_prefix, "mlflowBucket_${substr(replace(var.bucket_name, "/[^a-zA-Z0-9]/", "_"), 0, 44)}")

  writer_roles = local.custom_roles ? { custom = google_project_iam_custom_role.writer[0].name } : {
    for r in local.writer_predefined_roles : trimprefix(r, "roles/") => r
  }
  reader_roles = local.custom_roles ? { custom = google_project_iam_custom_role.reader[0].name } : {
    for r in local.reader_predefined_roles : trimprefix(r, "roles/") => r
  }

  # One binding per (group, role, member); the keys only use inputs so they
  # are known at plan time.
  bucket_bindings = merge(
    { for pair in setproduct(keys(local.writer_roles), var.writers) : "writer/${pair[0]}/${pair[1]}" => {
      role   = local.writer_roles[pair[0]]
      member = pair[1]
    } },
    { for pair in setproduct(keys(local.reader_roles), var.readers) : "reader/${pair[0]}/${pair[1]}" => {
      role   = local.reader_roles[pair[0]]
      member = pair[1]
    } },
  )
}

resource "google_project_iam_custom_role" "writer" {
  count = local.custom_roles ? 1 : 0

  project     = var.project_id
  role_id     = "${local.role_id_prefix}_writer"
  title       = "mlflow-bucket writer (${var.bucket_name})"
  description = "Create, read, list and delete MLflow objects in gs://${var.bucket_name}."
  permissions = local.writer_permissions
  stage       = "GA"
}

resource "google_project_iam_custom_role" "reader" {
  count = local.custom_roles ? 1 : 0

  project     = var.project_id
  role_id     = "${local.role_id_prefix}_reader"
  title       = "mlflow-bucket reader (${var.bucket_name})"
  description = "Read and list MLflow objects in gs://${var.bucket_name}."
  permissions = local.reader_permissions
  stage       = "GA"
}

# Non-authoritative bindings on the bucket only (never on the project), so
# grants managed elsewhere are left alone; public access prevention blocks
# any public grant made outside this module.
resource "google_storage_bucket_iam_member" "this" {
  for_each = local.bucket_bindings

  bucket = google_storage_bucket.this.name
  role   = each.value.role
  member = each.value.member
}
