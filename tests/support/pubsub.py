"""The real google-cloud-pubsub client against the test stack's emulator."""

from __future__ import annotations

import json
import time
import uuid

from google.cloud import pubsub_v1

from shared.stack.layout import PROJECT_ID


class Bus:
    """Publishes to and pulls from the emulator with the real client library."""

    def __init__(self) -> None:
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self._created: list[str] = []

    def topic_path(self, topic: str) -> str:
        return self.publisher.topic_path(PROJECT_ID, topic)

    def publish(self, topic: str, data: bytes, **attributes: str) -> str:
        """Publish one message and wait for its id."""
        return self.publisher.publish(self.topic_path(topic), data, **attributes).result(timeout=30)

    def create_topic(self, topic: str) -> None:
        """Create a topic only this test uses."""
        self.publisher.create_topic(name=self.topic_path(topic))

    def own_topic(self) -> str:
        """A topic of the test's own, with its dead-letter topic, to push to an instance the test starts."""
        topic = f"test-events-{uuid.uuid4().hex[:12]}"
        self.create_topic(topic)
        self.create_topic(topic + ".dlq")
        return topic

    def pull_subscription(self, topic: str) -> str:
        """A new pull subscription on `topic`, seeing only what is published from now on."""
        path = self.subscriber.subscription_path(PROJECT_ID, f"test-{uuid.uuid4().hex[:12]}")
        self.subscriber.create_subscription(name=path, topic=self.topic_path(topic), ack_deadline_seconds=30)
        self._created.append(path)
        return path

    def push_subscription(self, topic: str, endpoint: str, dead_letter_topic: str, max_attempts: int = 10) -> str:
        """A push subscription like the local stack's (no retry policy: see shared/stack/pubsub_admin.py)."""
        path = self.subscriber.subscription_path(PROJECT_ID, f"test-push-{uuid.uuid4().hex[:12]}")
        self.subscriber.create_subscription(
            request={
                "name": path,
                "topic": self.topic_path(topic),
                "push_config": {"push_endpoint": endpoint},
                "ack_deadline_seconds": 30,
                "dead_letter_policy": {
                    "dead_letter_topic": self.topic_path(dead_letter_topic),
                    "max_delivery_attempts": max_attempts,
                },
            }
        )
        self._created.append(path)
        return path

    def pull(self, subscription: str, *, until=None, timeout: float = 20.0, settle: float = 0.0) -> list:
        """Pull and ack messages until `until(messages)` holds or `timeout`; then keep pulling
        `settle` seconds more, so a duplicate arriving late is seen too."""
        received: list = []
        deadline = time.monotonic() + timeout
        settle_deadline = None
        while time.monotonic() < (settle_deadline or deadline):
            reply = self.subscriber.pull(
                request={"subscription": subscription, "max_messages": 100}, timeout=5
            )
            if reply.received_messages:
                received.extend(m.message for m in reply.received_messages)
                self.subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in reply.received_messages]}
                )
            if settle_deadline is None and until is not None and until(received):
                settle_deadline = time.monotonic() + settle
            time.sleep(0.2)
        return received

    def close(self) -> None:
        """Delete what this bus created."""
        for path in self._created:
            try:
                self.subscriber.delete_subscription(subscription=path)
            except Exception:  # already gone: nothing to clean
                pass


def envelopes(messages: list) -> list[dict]:
    """Decode pulled messages into envelope documents."""
    return [json.loads(m.data) for m in messages]
