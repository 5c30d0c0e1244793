# One gen2 function per manifest entry, each from its own zip (built by `python -m shared.deploy.package`)
# named by content hash: a changed function redeploys, an unchanged one does not.

resource "google_storage_bucket" "sources" {
  name                        = "${var.project_id}-function-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  name   = "${each.key}-${filesha256("${var.source_dir}/${each.key}.zip")}.zip"
  bucket = google_storage_bucket.sources.name
  source = "${var.source_dir}/${each.key}.zip"
}

locals {
  function_env = {
    for name, f in local.functions : name => merge(
      {
        SERVICE_NAME                = name
        FUNCTION_TIMEOUT_SECONDS    = tostring(f.timeout_seconds)
        GCP_PROJECT                 = var.project_id
        DB_NAME                     = var.db_name
        DB_USER                     = trimsuffix(google_service_account.function[name].email, ".gserviceaccount.com")
        DB_INSTANCE_CONNECTION_NAME = google_sql_database_instance.main.connection_name
      },
      lookup(var.function_settings, name, {}),
    )
  }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  name     = each.key
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = each.value.entry_point
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    available_memory                 = each.value.memory
    available_cpu                    = "1"
    timeout_seconds                  = each.value.timeout_seconds
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    # Event functions take only Pub/Sub pushes (internal); HTTP functions are reachable, and guarded
    # by IAM (the API) or by signature checks (public callbacks).
    ingress_settings              = try(each.value.trigger.http, false) ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    vpc_connector                 = var.vpc_connector
    vpc_connector_egress_settings = "PRIVATE_RANGES_ONLY"
    environment_variables         = local.function_env[each.key]

    dynamic "secret_environment_variables" {
      for_each = toset(try(each.value.secrets, []))
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  lifecycle {
    precondition {
      # Every setting the manifest lists must get a value: a function missing one would refuse to start.
      condition     = !contains(keys(local.missing_settings), each.key)
      error_message = "function_settings lacks ${each.key}'s ${join(", ", lookup(local.missing_settings, each.key, []))} (listed in shared/topology.yaml)."
    }
    precondition {
      # Every value given must be one the function reads (its manifest settings or tuning).
      condition     = !contains(keys(local.undeclared_settings), each.key)
      error_message = "function_settings gives ${each.key} ${join(", ", lookup(local.undeclared_settings, each.key, []))}, which it never reads (see its settings and tuning in shared/topology.yaml)."
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.reader]
}
