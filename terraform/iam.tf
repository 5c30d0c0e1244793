# One service account per function, with only what it needs:
#   Cloud SQL client + instance user (IAM database login), publisher on its own output topics,
#   accessor on its own secrets (secrets.tf), and the invoker binding its trigger needs.

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "fn-${each.key}"
  display_name = "Cloud Function ${each.key}"
}

resource "google_project_iam_member" "sql_client" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.function[each.key].member
}

resource "google_project_iam_member" "sql_instance_user" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = google_service_account.function[each.key].member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.publishers

  topic  = google_pubsub_topic.topic[each.value.topic].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.value.function].member
}

# Event functions: only the push subscriptions' identity may invoke them.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.event_functions

  name     = google_cloudfunctions2_function.function[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.pusher.member
}

# HTTP functions: IAM-only callers, or everyone for a public callback endpoint that checks signatures.
resource "google_cloud_run_v2_service_iam_member" "http_invoker" {
  for_each = {
    for pair in flatten([
      for name, f in local.http_functions : [
        for member in(try(f.trigger.public, false) ? ["allUsers"] : var.api_invokers) : { function = name, member = member }
      ]
    ]) : "${pair.function}/${pair.member}" => pair
  }

  name     = google_cloudfunctions2_function.function[each.value.function].name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value.member
}

# The reconciler redrives dead letters: it pulls (and acknowledges) every hold subscription.
resource "google_pubsub_subscription_iam_member" "redrive_subscriber" {
  for_each = {
    for pair in flatten([
      for name, f in local.functions : [
        for hold in keys(local.hold_subscriptions) : { function = name, hold = hold }
      ] if try(f.redrives_dead_letters, false)
    ]) : "${pair.function}/${pair.hold}" => pair
  }

  subscription = google_pubsub_subscription.hold[each.value.hold].id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.function[each.value.function].member
}
