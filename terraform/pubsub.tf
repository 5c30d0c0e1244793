# Topics, the push subscriptions that deliver into the functions (with dead-letter topics, bounded
# attempts and exponential backoff), and a pull subscription holding each dead-letter topic.
#
# Why push subscriptions rather than a gen2 `event_trigger`: the Eventarc-managed subscription an
# event_trigger creates cannot be given a dead-letter policy or backoff from Terraform. A push
# subscription with an OIDC token onto the function's (internal-ingress) URL has exactly the delivery
# contract of the manifest, and is what the local stack runs on the emulator. The functions are
# CloudEvent functions either way: functions-framework converts a Pub/Sub push into the same
# `google.cloud.pubsub.topic.v1.messagePublished` event.

resource "google_pubsub_topic" "topic" {
  for_each = toset(local.topology.topics)

  name                       = each.value
  message_retention_duration = "604800s"
}

resource "google_service_account" "pusher" {
  account_id   = "pubsub-pusher"
  display_name = "Pub/Sub push subscriptions into the functions"
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "604800s"
  # Never expire: by default GCP deletes a subscription after 31 days without activity, and a quiet
  # topic (compliance.reviews.v1) would then lose its subscriber and every message after.
  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = google_cloudfunctions2_function.function[each.value.push_to].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.pusher.email
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topic[each.value.dead_letter_topic].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "${each.value.retry.minimum_backoff_seconds}s"
    maximum_backoff = "${each.value.retry.maximum_backoff_seconds}s"
  }
}

# A topic without a subscription drops what is published to it: these keep dead letters for the
# on-call engineer (see the README's "Dead letters" section to inspect and replay them).
resource "google_pubsub_subscription" "hold" {
  for_each = local.hold_subscriptions

  name                       = each.key
  topic                      = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering is done by the Pub/Sub service agent: it publishes to the DLQ and must be able to
# acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dlq_publisher" {
  for_each = local.dead_letter_topics

  topic  = google_pubsub_topic.topic[each.value].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dlq_source_subscriber" {
  for_each = local.push_subscriptions

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The service agent mints the OIDC tokens of the push subscriptions.
resource "google_service_account_iam_member" "pusher_token_creator" {
  service_account_id = google_service_account.pusher.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
