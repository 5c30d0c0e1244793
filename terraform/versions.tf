# Providers are pinned exactly; upgrade deliberately. State lives in a GCS bucket given at init time:
#   terraform init -backend-config="bucket=<state-bucket>" -backend-config="prefix=escrow-platform"
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
