"""Publishing with the real google-cloud-pubsub client.

The client honours `PUBSUB_EMULATOR_HOST` by itself, so the same code publishes to the local emulator
and to GCP. Publishing waits for every future: a message counts as sent only once Pub/Sub confirmed it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from google.api_core.retry import Retry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from shared.errors import PublishFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for the wire."""

    topic: str
    data: bytes
    attributes: dict[str, str]


# A publish waits this long for more messages to join its batch. A handler's few messages should go at
# once; a drain of hundreds is enqueued faster in full batches of 100 than in many small ones.
FEW_MESSAGES_LATENCY_SECONDS = 0.001
MANY_MESSAGES_LATENCY_SECONDS = 0.01
MESSAGES_PER_BATCH = 100


@functools.cache
def get_publisher(many: bool = False) -> pubsub_v1.PublisherClient:
    """The instance's publisher client for a few messages (or, `many`, for a batch's worth or more)."""
    latency = MANY_MESSAGES_LATENCY_SECONDS if many else FEW_MESSAGES_LATENCY_SECONDS
    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=latency, max_messages=MESSAGES_PER_BATCH)
    )


def topic_path(project_id: str, topic: str) -> str:
    """The fully qualified topic name."""
    return f"projects/{project_id}/topics/{topic}"


def publish_all(project_id: str, messages: Sequence[OutgoingMessage], timeout: float) -> list[str]:
    """Publish the messages and wait for each; return the message ids or raise PublishFailed."""
    publisher = get_publisher(many=len(messages) >= MESSAGES_PER_BATCH)
    # Bound the client's own retries by our timeout, so a dead endpoint fails this invocation in time
    # for Pub/Sub to redeliver, instead of hanging until the function is killed.
    retry = Retry(initial=0.1, maximum=2.0, multiplier=2.0, timeout=timeout)
    futures = [
        publisher.publish(
            topic_path(project_id, message.topic),
            message.data,
            retry=retry,
            timeout=timeout,
            **message.attributes,
        )
        for message in messages
    ]
    try:
        return [future.result(timeout=timeout) for future in futures]
    # The client surfaces failures as GoogleAPIError, TimeoutError or transport-level errors;
    # all of them mean the same here: not confirmed, so the invocation must be retried.
    except Exception as exc:
        raise PublishFailed(f"publish of {len(messages)} message(s) failed: {exc!r}") from exc


@dataclass(frozen=True)
class PulledMessage:
    """A message pulled from a subscription, with what acknowledging it takes."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]


@functools.cache
def get_subscriber() -> pubsub_v1.SubscriberClient:
    """The instance's subscriber client (for pulling dead letters), created on first use."""
    return pubsub_v1.SubscriberClient()


def subscription_path(project_id: str, subscription: str) -> str:
    """The fully qualified subscription name."""
    return f"projects/{project_id}/subscriptions/{subscription}"


def pull_now(project_id: str, subscription: str, max_messages: int, timeout: float) -> list[PulledMessage]:
    """What the subscription holds right now (up to `max_messages`); empty at once when it holds nothing."""
    try:
        reply = get_subscriber().pull(
            request={"subscription": subscription_path(project_id, subscription), "max_messages": max_messages,
                     "return_immediately": True},
            timeout=timeout,
        )
    except Exception as exc:
        raise PublishFailed(f"pull from {subscription} failed: {exc!r}") from exc
    return [PulledMessage(ack_id=m.ack_id, message_id=m.message.message_id, data=bytes(m.message.data),
                          attributes=dict(m.message.attributes)) for m in reply.received_messages]


def acknowledge(project_id: str, subscription: str, ack_ids: Sequence[str], timeout: float) -> None:
    """Acknowledge pulled messages, so the subscription does not hand them out again."""
    if ack_ids:
        get_subscriber().acknowledge(
            request={"subscription": subscription_path(project_id, subscription), "ack_ids": list(ack_ids)},
            timeout=timeout)
