"""A no-op hop for the latency floor: receive a push, publish the same bytes to NEXT_TOPIC, wait."""

import base64
import os

import functions_framework
from google.cloud import pubsub_v1

PUBLISHER = pubsub_v1.PublisherClient()
NEXT = PUBLISHER.topic_path(os.environ["GCP_PROJECT"], os.environ["NEXT_TOPIC"])


@functions_framework.cloud_event
def hop(cloud_event) -> None:
    message = cloud_event.data["message"]
    PUBLISHER.publish(NEXT, base64.b64decode(message.get("data", "")), **(message.get("attributes") or {})).result(30)
