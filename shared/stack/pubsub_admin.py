"""Creates the manifest's topics and subscriptions on the emulator through its REST API."""

from __future__ import annotations

import requests

from shared.topology import Subscription, Topology


class PubSubAdmin:
    """Idempotent topic and subscription management on one emulator project."""

    def __init__(self, host: str, project_id: str) -> None:
        self.base = f"http://{host}/v1/projects/{project_id}"
        self.project_id = project_id

    def topic_name(self, topic: str) -> str:
        """Fully qualified topic name."""
        return f"projects/{self.project_id}/topics/{topic}"

    def create_topic(self, topic: str) -> None:
        """Create the topic; an existing one is fine."""
        _accept_existing(requests.put(f"{self.base}/topics/{topic}", json={}, timeout=10))

    def create_subscription(self, name: str, body: dict) -> None:
        """Create the subscription; an existing one is fine."""
        _accept_existing(requests.put(f"{self.base}/subscriptions/{name}", json=body, timeout=10))

    def publish(self, topic: str, data: bytes) -> None:
        """Publish one message (as Cloud Scheduler would)."""
        import base64

        reply = requests.post(f"{self.base}/topics/{topic}:publish", timeout=10,
                              json={"messages": [{"data": base64.b64encode(data).decode()}]})
        reply.raise_for_status()

    def delete_subscription(self, name: str) -> None:
        """Delete the subscription if it exists."""
        requests.delete(f"{self.base}/subscriptions/{name}", timeout=10)

    def apply(self, topology: Topology, push_endpoints: dict[str, str]) -> None:
        """Create every topic and subscription of the manifest, pushing to the given endpoints."""
        for topic in topology.topics:
            self.create_topic(topic)
        for sub in topology.subscriptions:
            self.create_subscription(sub.name, self.subscription_body(sub, push_endpoints))

    def subscription_body(self, sub: Subscription, push_endpoints: dict[str, str]) -> dict:
        """The REST body of one manifest subscription, as the emulator can honour it.

        The retry policy is left out on purpose: the emulator's exponential-backoff redelivery loses
        messages (seen here: after a database restart, 1 to 5 of 8 failed pushes were never pushed
        again, with no dead-lettering either). Without a policy the emulator redelivers on its own
        short schedule, and loses nothing. The manifest's policy is what Terraform deploys.
        """
        body: dict = {"topic": self.topic_name(sub.topic), "ackDeadlineSeconds": sub.ack_deadline_seconds}
        if sub.push_to:
            body["pushConfig"] = {"pushEndpoint": push_endpoints[sub.push_to]}
            body["deadLetterPolicy"] = {
                "deadLetterTopic": self.topic_name(sub.dead_letter_topic),
                "maxDeliveryAttempts": sub.max_delivery_attempts,
            }
        return body


def _accept_existing(reply: requests.Response) -> None:
    if reply.status_code not in (200, 409):
        raise RuntimeError(f"Pub/Sub emulator refused {reply.request.method} {reply.url}: "
                           f"{reply.status_code} {reply.text}")
