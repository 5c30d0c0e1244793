# Cloud Scheduler publishes the ticks (relay.tick, prices.tick, …) the manifest declares.

resource "google_cloud_scheduler_job" "job" {
  for_each = { for job in local.topology.scheduler_jobs : job.name => job }

  name      = each.key
  region    = var.region
  schedule  = each.value.schedule
  time_zone = each.value.time_zone

  retry_config {
    retry_count          = 3
    min_backoff_duration = "5s"
    max_backoff_duration = "60s"
  }

  pubsub_target {
    topic_name = google_pubsub_topic.topic[each.value.topic].id
    data       = base64encode(jsonencode({ source = "cloud-scheduler", job = each.key }))
  }
}
