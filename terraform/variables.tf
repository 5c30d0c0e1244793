variable "project_id" {
  description = "GCP project that hosts the platform."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid GCP project id."
  }
}

variable "region" {
  description = "Region of the functions, Cloud SQL, Scheduler jobs and the source bucket."
  type        = string
  default     = "europe-west1"
}

variable "private_network" {
  description = "Self link of the VPC network Cloud SQL gets its private IP in (private services access must be set up on it)."
  type        = string
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/R/connectors/NAME) the functions reach Cloud SQL's private IP through."
  type        = string
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "db_availability_type" {
  description = "REGIONAL (high availability, production) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.db_availability_type)
    error_message = "db_availability_type must be REGIONAL or ZONAL."
  }
}

variable "db_max_connections" {
  description = "PostgreSQL max_connections; the functions' pools must fit in it (see sql.tf). 300 fits the default tier (7.5 GB): rescreen's 20 instances alone may hold 80."
  type        = number
  default     = 300

  validation {
    condition     = var.db_max_connections >= 50 && var.db_max_connections <= 4000
    error_message = "db_max_connections must be between 50 and 4000."
  }
}

variable "db_reserved_connections" {
  description = "Connections kept free for migrations, operators and Cloud SQL itself."
  type        = number
  default     = 20
}

variable "db_name" {
  description = "Database name (DB_NAME of every function)."
  type        = string
  default     = "escrow"
}

variable "function_settings" {
  description = "Per function, the values of the non-secret settings its manifest entry lists beyond the platform's (SERVICE_NAME, GCP_PROJECT, DB_*), e.g. ETH_RPC_URL, CHAIN_ID, PRICE_ASSETS."
  type        = map(map(string))
  default     = {}
}

variable "api_invokers" {
  description = "IAM members allowed to call the query API (it is IAM-only), e.g. [\"group:ops@example.com\"]."
  type        = list(string)
  default     = []
}

variable "source_dir" {
  description = "Directory holding the function zips built by `python -m shared.deploy.package` (dist/)."
  type        = string
  default     = "../dist"
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<n>) every alert goes to."
  type        = list(string)
  default     = []
}

variable "relay_max_lag_blocks" {
  description = "relay lag, in blocks behind the confirmed head, that pages someone."
  type        = number
  default     = 50
}

variable "price_max_age_minutes" {
  description = "Minutes without an accepted price for an asset before someone is paged (its heartbeat plus a margin)."
  type        = number
  default     = 90
}
