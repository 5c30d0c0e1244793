output "function_uris" {
  description = "URL of each function (event functions accept only the push subscriptions' identity)."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.service_config[0].uri }
}

output "function_service_accounts" {
  description = "Service account of each function; its IAM database user is this email without .gserviceaccount.com."
  value       = { for name, sa in google_service_account.function : name => sa.email }
}

output "sql_instance_connection_name" {
  description = "For DB_INSTANCE_CONNECTION_NAME and the Cloud SQL Auth Proxy (migrations)."
  value       = google_sql_database_instance.main.connection_name
}

output "migrator_db_user" {
  description = "IAM database user the migration step connects as."
  value       = google_sql_user.migrator.name
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding each dead-letter topic."
  value       = [for name, s in google_pubsub_subscription.hold : name]
}

output "secret_ids" {
  description = "Secrets whose values an operator must add (gcloud secrets versions add)."
  value       = [for s in google_secret_manager_secret.secret : s.secret_id]
}
