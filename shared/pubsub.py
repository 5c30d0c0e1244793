"""Publishing and pulling: the Publish requests a call makes, and the messages pulled, over the gRPC
channel of shared/pubsub_transport.py (it honours `PUBSUB_EMULATOR_HOST`, so the same code publishes
to the local emulator and to GCP). A message counts as sent only once Pub/Sub confirmed it (its message
id came back). gRPC is imported on first use: an instance whose requests publish nothing (the api's
queries, a callback) never loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared import pubsub_wire
from shared.errors import PublishFailed
from shared.pubsub_transport import ACKNOWLEDGE, PUBLISH, PULL, Request, call, call_each

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for the wire."""

    topic: str
    data: bytes
    attributes: dict[str, str]


# Pub/Sub takes at most 1,000 messages and 10 MB in one Publish request; the margin leaves room for the
# request's own framing.
MESSAGES_PER_REQUEST = 1000
BYTES_PER_REQUEST = 9_000_000
# Publish requests of one call sent at once (measured on the emulator: 17k messages/s one at a time,
# 25k four at a time).
REQUESTS_IN_FLIGHT = 4


def topic_path(project_id: str, topic: str) -> str:
    """The fully qualified topic name."""
    return f"projects/{project_id}/topics/{topic}"


def publish_all(project_id: str, messages: Sequence[OutgoingMessage], timeout: float) -> list[str]:
    """Publish the messages; return their message ids in the same order, or raise PublishFailed.

    The messages go as Publish requests made here and now, one per topic and up to MESSAGES_PER_REQUEST
    messages, each retried within `timeout`. (The client's batching publisher, a future per message fed
    to a background thread on a timer, costs milliseconds for a handler's one message and sends a
    drain's thousands at a quarter of this rate; measured on the emulator.)
    """
    message_ids = [""] * len(messages)

    def send(request: tuple[str, list[int]]) -> None:
        topic, positions = request
        path = topic_path(project_id, topic)
        body = pubsub_wire.publish_request(path, [(messages[p].data, messages[p].attributes) for p in positions])
        confirmed = call(PUBLISH, Request(path, body), timeout)
        if len(confirmed) != len(positions):
            raise PublishFailed(f"Pub/Sub confirmed {len(confirmed)} of {len(positions)} messages")
        for position, message_id in zip(positions, confirmed, strict=True):
            message_ids[position] = message_id

    try:
        publish_requests = list(_requests(messages))
        if len(publish_requests) == 1:
            send(publish_requests[0])
        elif publish_requests:
            with ThreadPoolExecutor(min(REQUESTS_IN_FLIGHT, len(publish_requests))) as pool:
                list(pool.map(send, publish_requests))  # re-raises the first failure
    # A refusal, a timeout, a transport failure: all mean the same here, not confirmed, so the invocation
    # must be retried.
    except Exception as exc:
        reason = str(exc) if isinstance(exc, PublishFailed) else repr(exc)
        raise PublishFailed(f"publish of {len(messages)} message(s) failed: {reason}") from exc
    return message_ids


def _requests(messages: Sequence[OutgoingMessage]) -> Iterator[tuple[str, list[int]]]:
    """The messages' positions grouped into Publish requests: by topic, in order, within the limits."""
    by_topic: dict[str, list[int]] = {}
    for position, message in enumerate(messages):
        by_topic.setdefault(message.topic, []).append(position)
    for topic, positions in by_topic.items():
        request: list[int] = []
        size = 0
        for position in positions:
            message = messages[position]
            message_size = len(message.data) + sum(len(k) + len(v) for k, v in message.attributes.items())
            if request and (len(request) == MESSAGES_PER_REQUEST or size + message_size > BYTES_PER_REQUEST):
                yield topic, request
                request, size = [], 0
            request.append(position)
            size += message_size
        yield topic, request


@dataclass(frozen=True)
class PulledMessage:
    """A message pulled from a subscription, with what acknowledging it takes."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]


def subscription_path(project_id: str, subscription: str) -> str:
    """The fully qualified subscription name."""
    return f"projects/{project_id}/subscriptions/{subscription}"


def pull_each_now(project_id: str, subscriptions: Sequence[str], max_messages: int,
                  timeout: float) -> list[list[PulledMessage]]:
    """What each subscription holds right now (up to `max_messages`; empty at once when it holds nothing),
    in their order, the requests sent at once; PublishFailed when one cannot be had. The reconciler's 13
    dead-letter holds took 65 ms pulled one after another, mostly waiting."""
    paths = [subscription_path(project_id, subscription) for subscription in subscriptions]
    try:
        replies = call_each(PULL, [Request(path, pubsub_wire.pull_request(path, max_messages, return_immediately=True))
                                   for path in paths], timeout)
    except Exception as exc:
        raise PublishFailed(f"pull from {', '.join(subscriptions)} failed: {exc!r}") from exc
    return [[PulledMessage(ack_id=m.ack_id, message_id=m.message_id, data=m.data, attributes=m.attributes)
             for m in reply] for reply in replies]


def acknowledge(project_id: str, subscription: str, ack_ids: Sequence[str], timeout: float) -> None:
    """Acknowledge pulled messages, so the subscription does not hand them out again."""
    if not ack_ids:
        return
    try:
        path = subscription_path(project_id, subscription)
        call(ACKNOWLEDGE, Request(path, pubsub_wire.acknowledge_request(path, ack_ids)), timeout)
    except Exception as exc:
        raise PublishFailed(f"acknowledge on {subscription} failed: {exc!r}") from exc
