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
from google.pubsub_v1 import PublisherClient as GapicPublisherClient
from google.pubsub_v1.types import PubsubMessage

from shared.errors import PublishFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for the wire."""

    topic: str
    data: bytes
    attributes: dict[str, str]


# A drain of a batch's worth of messages or more goes through the client's batching: it waits this long
# for a batch to fill, and sends the batches of MESSAGES_PER_BATCH concurrently.
MANY_MESSAGES_LATENCY_SECONDS = 0.01
MESSAGES_PER_BATCH = 100


@functools.cache
def get_publisher() -> pubsub_v1.PublisherClient:
    """The instance's publisher client, created on first use."""
    return pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(
        max_latency=MANY_MESSAGES_LATENCY_SECONDS, max_messages=MESSAGES_PER_BATCH))


def topic_path(project_id: str, topic: str) -> str:
    """The fully qualified topic name."""
    return f"projects/{project_id}/topics/{topic}"


def publish_all(project_id: str, messages: Sequence[OutgoingMessage], timeout: float) -> list[str]:
    """Publish the messages and wait for each; return the message ids or raise PublishFailed.

    A handler's few messages go as one Publish call per topic, made here and now (the batching client's
    thread and timer cost a few milliseconds a message); a drain's hundreds go through the batching client.
    """
    # Bound the client's own retries by our timeout, so a dead endpoint fails this invocation in time
    # for Pub/Sub to redeliver, instead of hanging until the function is killed.
    retry = Retry(initial=0.1, maximum=2.0, multiplier=2.0, timeout=timeout)
    try:
        if len(messages) < MESSAGES_PER_BATCH:
            return _publish_directly(project_id, messages, retry, timeout)
        futures = [get_publisher().publish(topic_path(project_id, message.topic), message.data, retry=retry,
                                           timeout=timeout, **message.attributes) for message in messages]
        return [future.result(timeout=timeout) for future in futures]
    # The client surfaces failures as GoogleAPIError, TimeoutError or transport-level errors;
    # all of them mean the same here: not confirmed, so the invocation must be retried.
    except Exception as exc:
        raise PublishFailed(f"publish of {len(messages)} message(s) failed: {exc!r}") from exc


def _publish_directly(project_id: str, messages: Sequence[OutgoingMessage], retry: Retry,
                      timeout: float) -> list[str]:
    """One Publish call per topic, in the messages' order; the ids come back in that order."""
    by_topic: dict[str, list[int]] = {}
    for position, message in enumerate(messages):
        by_topic.setdefault(message.topic, []).append(position)
    message_ids = [""] * len(messages)
    for topic, positions in by_topic.items():
        # The unbatched Publish call of the GAPIC client the batching client is built on.
        reply = GapicPublisherClient.publish(
            get_publisher(), topic=topic_path(project_id, topic),
            messages=[PubsubMessage(data=messages[p].data, attributes=messages[p].attributes) for p in positions],
            retry=retry, timeout=timeout)
        if len(reply.message_ids) != len(positions):
            raise PublishFailed(f"Pub/Sub confirmed {len(reply.message_ids)} of {len(positions)} messages")
        for position, message_id in zip(positions, reply.message_ids, strict=True):
            message_ids[position] = message_id
    return message_ids


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
