# The secrets exist here; their values never do. An operator adds each version:
#   printf '%s' "$VALUE" | gcloud secrets versions add coingecko-api-key --data-file=-
# Functions read them as environment variables of the manifest's name (`version = "latest"`).

resource "google_secret_manager_secret" "secret" {
  for_each = toset(local.topology.secrets)

  secret_id = lower(replace(each.value, "_", "-"))

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "reader" {
  for_each = local.secret_readers

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}
