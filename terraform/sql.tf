# Cloud SQL for PostgreSQL with IAM database authentication: each function logs in as its own service
# account (an IAM database user) and is granted its domain role by the migration step
# (`python -m shared.deploy.migrate`), which also runs Alembic before any function deploys.

resource "google_sql_database_instance" "main" {
  name                = "escrow-platform"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = true

  settings {
    tier                        = var.db_tier
    availability_type           = var.db_availability_type
    deletion_protection_enabled = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.private_network
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = 14
      }
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    database_flags {
      name  = "max_connections"
      value = tostring(var.db_max_connections)
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = local.connections_fit
      error_message = "The functions may open ${local.function_connections} connections (max_instances x 4); raise db_max_connections or lower max_instances in shared/topology.yaml."
    }
  }
}

# The only encoding and collation Cloud SQL accepts for a PostgreSQL database, stated: the local stack's
# database collates the same way (shared/stack/services.py, DATABASE_LOCALE).
resource "google_sql_database" "escrow" {
  name      = var.db_name
  instance  = google_sql_database_instance.main.name
  charset   = "UTF8"
  collation = "en_US.UTF8"
}

# One IAM database user per function with a database role.
resource "google_sql_user" "function" {
  for_each = { for name, f in local.functions : name => f if try(f.db_role, null) != null }

  instance = google_sql_database_instance.main.name
  name     = trimsuffix(google_service_account.function[each.key].email, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# The migrator: Cloud Build's migrate step connects as this service account (IAM user) through the
# Cloud SQL Auth Proxy, impersonating it. It owns the schemas the migrations create. The bootstrap stage
# (bootstrap/) creates the account and its project roles; reading it here fails the plan, naming it,
# if the bootstrap has not run.
data "google_service_account" "migrator" {
  account_id = "db-migrator"
}

resource "google_sql_user" "migrator" {
  instance = google_sql_database_instance.main.name
  name     = trimsuffix(data.google_service_account.migrator.email, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}
