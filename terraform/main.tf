# Project-level facts. The manifest-derived locals are in manifest.tf.

data "google_project" "this" {}

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
