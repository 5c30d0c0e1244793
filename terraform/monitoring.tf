# What tells someone that something is wrong: log-based metrics for the figures only the logs carry,
# alert policies on them and on Pub/Sub, Cloud Run and Cloud SQL metrics, and one dashboard.
# Notification channels are created outside (email, PagerDuty, Slack) and passed in by id.

locals {
  alert_channels = var.alert_notification_channels
  # A function's instance count alerts at this share of its manifest max_instances.
  instance_alert_share = 0.8
}

# ---------------------------------------------------------------- log-based metrics

# One `reconcile drift` line per drift the reconciler finds (shared/reconcile/service.py).
resource "google_logging_metric" "reconcile_drifts" {
  name   = "reconcile_drifts"
  filter = "jsonPayload.message=\"reconcile drift\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key         = "drift_kind"
      value_type  = "STRING"
      description = "settlement_missing, risk_differs, notify_missing, outbox_unpublished, ..."
    }
  }
  label_extractors = {
    drift_kind = "EXTRACT(jsonPayload.drift_kind)"
  }
}

# A compliance review the api refused to its caller (shared/api/compliance_queries.py): no identity Cloud Run
# verified, a caller who is not among COMPLIANCE_REVIEWERS, or a reviewer deciding on their own screening.
resource "google_logging_metric" "compliance_reviews_refused" {
  name   = "compliance_reviews_refused"
  filter = "jsonPayload.message=\"compliance review refused to its caller\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key         = "refusal"
      value_type  = "STRING"
      description = "unidentified, not_a_reviewer or own_screening"
    }
  }
  label_extractors = {
    refusal = "EXTRACT(jsonPayload.refusal)"
  }
}

# A dead letter the reconciler stopped redriving: it waits for a person in ops.held_dead_letters.
resource "google_logging_metric" "held_dead_letters" {
  name   = "held_dead_letters"
  filter = "jsonPayload.message=\"dead letter held for a person\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

# relay's lag behind the confirmed chain head, logged by every tick.
resource "google_logging_metric" "relay_lag_blocks" {
  name            = "relay_lag_blocks"
  filter          = "jsonPayload.message=\"relay tick done\" AND jsonPayload.lag_blocks>=0"
  value_extractor = "EXTRACT(jsonPayload.lag_blocks)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 1
    }
  }
}

# Every price fetch-price accepted, per asset: its absence means the price is getting old.
resource "google_logging_metric" "prices_accepted" {
  name   = "prices_accepted"
  filter = "jsonPayload.message=\"price decided\" AND jsonPayload.status=\"accepted\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "asset"
      value_type = "STRING"
    }
  }
  label_extractors = {
    asset = "EXTRACT(jsonPayload.asset)"
  }
}

# A retention routine the reconciler could not run (shared/reconcile/retention.py); the next run tries again.
resource "google_logging_metric" "retention_failures" {
  name   = "retention_failures"
  filter = "jsonPayload.message=\"retention routine failed\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key         = "routine"
      value_type  = "STRING"
      description = "snapshot_partitions, margin_events, notifications, price_history, ..."
    }
  }
  label_extractors = {
    routine = "EXTRACT(jsonPayload.routine)"
  }
}

# ---------------------------------------------------------------- alert policies

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  display_name          = "Dead letters waiting"
  combiner              = "OR"
  notification_channels = local.alert_channels
  documentation {
    content = "A message failed every delivery attempt. The reconciler redrives it within 5 minutes; if it stays, see ops.held_dead_letters and README 'Dead letters'."
  }
  conditions {
    display_name = "Messages in a dead-letter hold subscription"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.label.subscription_id = monitoring.regex.full_match(\".*\\\\.dlq\\\\.hold\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "900s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "oldest_unacked_message" {
  display_name          = "A push subscription falls behind"
  combiner              = "OR"
  notification_channels = local.alert_channels
  conditions {
    display_name = "Oldest unacknowledged message older than 10 minutes"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = 600
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

# Any line of these log-based counters pages someone.
resource "google_monitoring_alert_policy" "log_line" {
  for_each = {
    reconcile_drift = {
      title  = "Reconciler found drift"
      metric = google_logging_metric.reconcile_drifts.name
      doc    = "See ops.drifts: a drift with a repair was fixed by replay; one without waits for a person, with both sides recorded."
    }
    compliance_review_refused = {
      title  = "A compliance review was refused to its caller"
      metric = google_logging_metric.compliance_reviews_refused.name
      doc    = "An api caller tried to confirm or dismiss a compliance hit without the right: no verified identity, not one of COMPLIANCE_REVIEWERS, or on their own screening. The api's log line names the user, the caller and the refusal; nothing was staged."
    }
    held_dead_letter = {
      title  = "A dead letter is held for a person"
      metric = google_logging_metric.held_dead_letters.name
      doc    = "See ops.held_dead_letters for the message and the reason; replay it with shared.deploy.replay_dead_letters once fixed."
    }
  }

  display_name          = each.value.title
  combiner              = "OR"
  notification_channels = local.alert_channels
  documentation {
    content = each.value.doc
  }
  conditions {
    display_name = each.value.title
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${each.value.metric}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
}

# One failed run is retried by the next; a routine failing run after run lets its tables grow unbounded.
resource "google_monitoring_alert_policy" "retention_failing" {
  display_name          = "Retention keeps failing"
  combiner              = "OR"
  notification_channels = local.alert_channels
  documentation {
    content = "A retention routine failed in 3 or more reconcile runs within an hour: see the reconcile logs' \"retention routine failed\" lines for the routine and the database's reason. Its tables grow until it runs."
  }
  conditions {
    display_name = "a retention routine failed 3 times in an hour"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.retention_failures.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2
      duration        = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.routine"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "relay_lag" {
  display_name          = "relay lags behind the chain"
  combiner              = "OR"
  notification_channels = local.alert_channels
  conditions {
    display_name = "relay lag above ${var.relay_max_lag_blocks} blocks"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.relay_lag_blocks.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.relay_max_lag_blocks
      duration        = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_50"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "price_age" {
  display_name          = "No accepted price"
  combiner              = "OR"
  notification_channels = local.alert_channels
  documentation {
    content = "fetch-price accepted no price for an asset: see pricing.decisions (held, suspect, stale sources)."
  }
  conditions {
    display_name = "no accepted price for ${var.price_max_age_minutes} minutes"
    condition_absent {
      filter   = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.prices_accepted.name}\""
      duration = "${var.price_max_age_minutes * 60}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.asset"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "Functions answer 5xx"
  combiner              = "OR"
  notification_channels = local.alert_channels
  conditions {
    display_name = "5xx responses"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }
}

resource "google_monitoring_alert_policy" "instances_near_max" {
  for_each = local.functions

  display_name          = "${each.key} near its max_instances"
  combiner              = "OR"
  notification_channels = local.alert_channels
  conditions {
    display_name = "${each.key} instances above ${local.instance_alert_share * 100}% of ${each.value.max_instances}"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.label.service_name = \"${each.key}\" AND metric.type = \"run.googleapis.com/container/instance_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.max_instances * local.instance_alert_share
      duration        = "600s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "database" {
  display_name          = "Cloud SQL near its limits"
  combiner              = "OR"
  notification_channels = local.alert_channels
  conditions {
    display_name = "connections above 80% of the functions' budget"
    condition_threshold {
      filter          = "resource.type = \"cloudsql_database\" AND metric.type = \"cloudsql.googleapis.com/database/postgresql/num_backends\""
      comparison      = "COMPARISON_GT"
      threshold_value = local.function_connections * 0.8
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  conditions {
    display_name = "CPU above 80%"
    condition_threshold {
      filter          = "resource.type = \"cloudsql_database\" AND metric.type = \"cloudsql.googleapis.com/database/cpu/utilization\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.8
      duration        = "600s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }
  conditions {
    display_name = "disk above 80%"
    condition_threshold {
      filter          = "resource.type = \"cloudsql_database\" AND metric.type = \"cloudsql.googleapis.com/database/disk/utilization\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.8
      duration        = "600s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

# ---------------------------------------------------------------- dashboard

resource "google_monitoring_dashboard" "platform" {
  dashboard_json = jsonencode({
    displayName = "Escrow platform"
    mosaicLayout = {
      columns = 12
      tiles = [for index, chart in [
        { title = "Dead letters waiting", filter = "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.label.subscription_id = monitoring.regex.full_match(\".*\\\\.dlq\\\\.hold\")", aligner = "ALIGN_MAX" },
        { title = "Oldest unacked message (s)", filter = "metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\"", aligner = "ALIGN_MAX" },
        { title = "relay lag (blocks)", filter = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.relay_lag_blocks.name}\"", aligner = "ALIGN_DELTA" },
        { title = "Prices accepted", filter = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.prices_accepted.name}\"", aligner = "ALIGN_SUM" },
        { title = "Reconcile drifts", filter = "metric.type = \"logging.googleapis.com/user/${google_logging_metric.reconcile_drifts.name}\"", aligner = "ALIGN_SUM" },
        { title = "Function 5xx", filter = "metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\"", aligner = "ALIGN_RATE" },
        { title = "Instances per function", filter = "metric.type = \"run.googleapis.com/container/instance_count\"", aligner = "ALIGN_MAX" },
        { title = "Cloud SQL connections", filter = "metric.type = \"cloudsql.googleapis.com/database/postgresql/num_backends\"", aligner = "ALIGN_MAX" },
        { title = "Cloud SQL CPU", filter = "metric.type = \"cloudsql.googleapis.com/database/cpu/utilization\"", aligner = "ALIGN_MEAN" },
        { title = "Cloud SQL disk", filter = "metric.type = \"cloudsql.googleapis.com/database/disk/utilization\"", aligner = "ALIGN_MAX" },
        ] : {
        xPos   = (index % 3) * 4
        yPos   = floor(index / 3) * 4
        width  = 4
        height = 4
        widget = {
          title = chart.title
          xyChart = {
            dataSets = [{
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter      = chart.filter
                  aggregation = { alignmentPeriod = "60s", perSeriesAligner = chart.aligner }
                }
              }
            }]
          }
        }
      }]
    }
  })
}
