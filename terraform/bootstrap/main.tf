# The bootstrap stage: what only a project owner can do, once, before the first `terraform apply` of
# ../ and the first Cloud Build. After it, the platform's apply and the build need no owner.
#
#   cd terraform/bootstrap
#   terraform init -backend-config="bucket=<state-bucket>" -backend-config="prefix=escrow-bootstrap"
#   terraform apply -var project_id=<project> -var region=<region> -var network=<vpc self link>
#
# It enables the APIs, creates the deployer identity Cloud Build runs as (with exactly the roles the
# platform's apply and the pipeline use), the migrator identity the migrations log in as (with the two
# roles a Cloud SQL IAM login needs), and the private worker pool peered to the VPC (Cloud SQL has a
# private IP only), and the secret that keeps the database admin's password. The Pub/Sub service agent
# and the database bootstrap are one command each, in the README ("Deploy to GCP"): the agent's resource
# exists only in the beta provider.

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.14.1"
    }
  }

  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

variable "project_id" {
  description = "The GCP project the platform runs in."
  type        = string
}

variable "region" {
  description = "Region of the functions, the database and the build pool."
  type        = string
}

variable "network" {
  description = "Self link of the VPC with private services access (projects/<p>/global/networks/<n>)."
  type        = string
}

locals {
  apis = toset([
    "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com", "eventarc.googleapis.com", "pubsub.googleapis.com",
    "cloudscheduler.googleapis.com", "sqladmin.googleapis.com", "secretmanager.googleapis.com",
    "iam.googleapis.com", "iamcredentials.googleapis.com", "vpcaccess.googleapis.com",
    "servicenetworking.googleapis.com", "storage.googleapis.com", "monitoring.googleapis.com",
    "logging.googleapis.com", "cloudresourcemanager.googleapis.com",
  ])

  # What the platform's apply (../) and the pipeline's steps do, and nothing else.
  deployer_roles = toset([
    "roles/cloudfunctions.admin",            # the functions
    "roles/run.admin",                       # their Cloud Run services and invoker bindings
    "roles/iam.serviceAccountAdmin",         # the functions' and pusher's service accounts
    "roles/iam.serviceAccountUser",          # actAs: deploy functions and subscriptions as those accounts
    "roles/iam.serviceAccountTokenCreator",  # impersonate the migrator for the migrations
    "roles/resourcemanager.projectIamAdmin", # the functions' project-level role bindings (../iam.tf)
    "roles/pubsub.admin",                    # topics, subscriptions and their IAM
    "roles/cloudsql.admin",                  # the instance, database and IAM users
    "roles/cloudsql.client",                 # the Auth Proxy for the migrations
    "roles/secretmanager.admin",             # the secrets (never their values) and accessor bindings
    "roles/secretmanager.viewer",            # check-secrets.sh: versions exist
    "roles/cloudscheduler.admin",            # the Scheduler jobs
    "roles/storage.admin",                   # the sources bucket and the state bucket
    "roles/monitoring.editor",               # alert policies and the dashboard
    "roles/logging.configWriter",            # log-based metrics
    "roles/logging.logWriter",               # the build's own logs
    "roles/cloudbuild.workerPoolUser",       # run in the private pool
  ])

  # A Cloud SQL IAM login: reach the instance through the Auth Proxy, and log in as an IAM user.
  migrator_roles = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
}

resource "google_project_service" "api" {
  for_each = local.apis

  service            = each.value
  disable_on_destroy = false
}

resource "google_service_account" "deployer" {
  account_id   = "escrow-deployer"
  display_name = "Cloud Build: tests, migrations and terraform apply of the escrow platform"
  depends_on   = [google_project_service.api]
}

resource "google_project_iam_member" "deployer" {
  for_each = local.deployer_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.deployer.member
}

# The migrations' identity (../sql.tf reads it and makes it an IAM database user). The deployer only
# impersonates it (roles/iam.serviceAccountTokenCreator above), so no build step holds the migrator's
# database rights except the migrate step.
resource "google_service_account" "migrator" {
  account_id   = "db-migrator"
  display_name = "Runs the Alembic migrations before each deploy"
  depends_on   = [google_project_service.api]
}

resource "google_project_iam_member" "migrator" {
  for_each = local.migrator_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.migrator.member
}

resource "google_cloudbuild_worker_pool" "build" {
  name     = "escrow-build"
  location = var.region

  worker_config {
    machine_type = "e2-highcpu-8"
    disk_size_gb = 100
  }

  network_config {
    peered_network = var.network
  }

  depends_on = [google_project_service.api]
}

# The built-in `postgres` user's password, for the one database bootstrap (README, step 3). Its value is
# added with gcloud and never passes through Terraform.
resource "google_secret_manager_secret" "db_admin_password" {
  secret_id = "db-admin-password"

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

output "deployer_service_account" {
  description = "Cloud Build's serviceAccount (cloudbuild.yaml substitution _DEPLOYER_SA)."
  value       = google_service_account.deployer.email
}

output "migrator_service_account" {
  description = "The migrations' identity (cloudbuild.yaml substitution _MIGRATOR_SA)."
  value       = google_service_account.migrator.email
}

output "worker_pool" {
  description = "Cloud Build's private pool (cloudbuild.yaml substitution _WORKER_POOL)."
  value       = google_cloudbuild_worker_pool.build.name
}
