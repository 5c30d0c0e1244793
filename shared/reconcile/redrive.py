"""Dead letters back home: each push subscription's dead letters are moved back to its topic.

Nothing a consumer refused as poison reaches a dead-letter topic (it is acknowledged and kept in
`<schema>.rejected_messages`), so what lands there failed for a reason that may have passed: a
database outage longer than every retry, a vendor down for an hour. A scheduled redrive republishes
each one to its source topic, with its body and attributes, counted per subscription and event; the
consumers' inboxes make a redriven message that had in fact applied change nothing. A message that
comes back after REDRIVE_MAX redrives, or that is not an event at all, is held in
`ops.held_dead_letters` with the reason, for a person.

Republishing goes to the topic, so every subscription of that topic sees the message again; the
others drop it as a duplicate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from shared.db import Engine, sql, transaction
from shared.envelope import Envelope
from shared.errors import InvalidEvent
from shared.pubsub import OutgoingMessage, PulledMessage, acknowledge, publish_all, pull_each_now
from shared.reconcile import SCHEMA
from shared.topology import Subscription, Topology

log = logging.getLogger(__name__)

# Attributes Pub/Sub adds when it dead-letters a message; they describe the old delivery, not the event.
DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
# The redrive count travels with the message, for whoever reads the consumer's logs.
REDRIVE_ATTRIBUTE = "redrive"
PULL_BATCH = 100
# Per subscription and run: a flood of dead letters is drained over several runs, not in one.
MAX_PULLS_PER_SUBSCRIPTION = 20
PUBSUB_CALL_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RedriveResult:
    """What one redrive run did."""

    redriven: int
    held: int


@dataclass(frozen=True)
class Route:
    """A push subscription, its source topic, and the pull subscription that holds its dead letters."""

    subscription: str
    topic: str
    hold: str


def routes(topology: Topology) -> list[Route]:
    """Every push subscription with its hold subscription, from the manifest."""
    found = []
    for sub in topology.subscriptions:
        if sub.push_to is None:
            continue
        hold = _hold_of(topology, sub)
        if hold is not None:
            found.append(Route(subscription=sub.name, topic=sub.topic, hold=hold))
    return found


def _hold_of(topology: Topology, sub: Subscription) -> str | None:
    return next((s.name for s in topology.subscriptions if s.push_to is None and s.topic == sub.dead_letter_topic),
                None)


def redrive_dead_letters(engine: Engine, topology: Topology, project_id: str, max_redrives: int,
                         publish_timeout: float) -> RedriveResult:
    """Move every dead letter back to its topic, or hold it with its reason; return the counts."""
    redriven = held = 0
    # Every hold is pulled at once, then again those that had messages, up to MAX_PULLS_PER_SUBSCRIPTION
    # times. A batch waits for the batches before it in its round (a few ms a message, far within the
    # holds' 60 s ack deadline) before it is redriven and acknowledged.
    pending = routes(topology)
    for _ in range(MAX_PULLS_PER_SUBSCRIPTION):
        batches = pull_each_now(project_id, [route.hold for route in pending], PULL_BATCH,
                                PUBSUB_CALL_TIMEOUT_SECONDS)
        pulled = [(route, messages) for route, messages in zip(pending, batches, strict=True) if messages]
        for route, messages in pulled:
            for message in messages:
                if _redrive_one(engine, route, message, project_id, max_redrives, publish_timeout):
                    redriven += 1
                else:
                    held += 1
            # Acknowledged only once each one is republished or held: a crash before this re-reads them.
            acknowledge(project_id, route.hold, [m.ack_id for m in messages], PUBSUB_CALL_TIMEOUT_SECONDS)
        pending = [route for route, _ in pulled]
        if not pending:
            break
    return RedriveResult(redriven=redriven, held=held)


_REDRIVES_SO_FAR = sql(f"SELECT redrive_count FROM {SCHEMA}.redrives WHERE subscription = :subscription "
                       "AND message_key = :message_key FOR UPDATE")
_HOLD = sql(f"INSERT INTO {SCHEMA}.held_dead_letters (subscription, message_key, message_id, reason, body, attributes) "
            "VALUES (:subscription, :message_key, :message_id, :reason, :body, CAST(:attributes AS jsonb)) "
            "ON CONFLICT DO NOTHING")
_COUNT_REDRIVE = sql(
    f"INSERT INTO {SCHEMA}.redrives AS r (subscription, message_key, topic, redrive_count) "
    "VALUES (:subscription, :message_key, :topic, 1) ON CONFLICT (subscription, message_key) "
    "DO UPDATE SET redrive_count = r.redrive_count + 1, last_redriven_at = now()")


def _redrive_one(engine: Engine, route: Route, message: PulledMessage, project_id: str, max_redrives: int,
                 publish_timeout: float) -> bool:
    """Republish one dead letter (True), or hold it (False)."""
    attributes = {name: value for name, value in message.attributes.items()
                  if not name.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX) and name != REDRIVE_ATTRIBUTE}
    try:
        key = Envelope.from_bytes(message.data).dedupe_key
        problem = None
    except InvalidEvent as exc:
        key, problem = f"message:{message.message_id}", f"not an event: {exc.reason}"
    with transaction(engine) as conn:
        dead_letter = {"subscription": route.subscription, "message_key": key}
        count = conn.execute(_REDRIVES_SO_FAR, dead_letter).scalar() or 0
        if problem is None and count >= max_redrives:
            problem = f"dead-lettered again after {count} redrives: the failure persists"
        if problem is not None:
            conn.execute(_HOLD, {**dead_letter, "message_id": message.message_id, "reason": problem,
                                 "body": message.data, "attributes": json.dumps(attributes)})
            log.error("dead letter held for a person", extra={
                "subscription": route.subscription, "message_key": key, "reason": problem})
            return False
        publish_all(project_id, [OutgoingMessage(route.topic, message.data,
                                                 {**attributes, REDRIVE_ATTRIBUTE: str(count + 1)})],
                    publish_timeout)
        conn.execute(_COUNT_REDRIVE, {**dead_letter, "topic": route.topic})
    log.warning("dead letter redriven to its topic", extra={
        "subscription": route.subscription, "topic": route.topic, "message_key": key, "redrive": count + 1})
    return True
