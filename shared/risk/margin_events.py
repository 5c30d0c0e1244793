"""Margin events are their own outbox: a pass writes each tier change once, in risk.margin_events, and the
row is published from there and marked (`published_at`, `message_id`).

The envelope is built from the row when it is published, the same bytes every time (a republish by the
reconciler sends what the first publish sent). Rounds take the oldest unpublished events (by the time
their pass wrote them) and hold their row locks until Pub/Sub confirmed them and they
are marked: two publishers at once (a delivery's and the reconciler's) skip each other's rows, and a
failed publish rolls back and leaves them pending.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared import topics
from shared.db import Engine, sql, transaction
from shared.envelope import Envelope, utc_iso
from shared.events import MARGIN_TIER_CHANGED
from shared.messaging import outbox
from shared.messaging.consumer import AfterCommit
from shared.pubsub import OutgoingMessage, publish_all
from shared.risk import SCHEMA

log = logging.getLogger(__name__)

# What one round publishes: its Publish requests go in flight together (shared/pubsub.py).
PUBLISH_ROUND = outbox.STAGED_ROUND

# The columns a message is built from, for the statements that read events to publish them.
MESSAGE_COLUMNS = ("m.event_id, m.chain_id, m.contract, m.escrow_id, m.depositor, m.asset_symbol, "
                   "m.previous_tier, m.tier, m.health_factor, m.price, m.collateral_amount, m.obligation_usd, "
                   "m.price_event_id, m.snapshot_id, m.correlation_id, m.cause_event_id, m.occurred_at")

_UNPUBLISHED = sql(
    f"SELECT {MESSAGE_COLUMNS} FROM {SCHEMA}.margin_events m WHERE m.published_at IS NULL "
    "ORDER BY m.occurred_at LIMIT :limit FOR UPDATE SKIP LOCKED")
_MARK_PUBLISHED = sql(
    f"UPDATE {SCHEMA}.margin_events m SET published_at = now(), message_id = sent.message_id "
    f"FROM {outbox.SENT_PAIRS.format(keys=':event_ids', message_ids=':message_ids')} "
    "WHERE m.event_id = sent.key")


def envelope(row: Any) -> Envelope:
    """The MarginTierChanged envelope of a margin event (a row holding MESSAGE_COLUMNS)."""
    return Envelope(
        event_id=row.event_id, event_type=MARGIN_TIER_CHANGED, schema_version=1,
        occurred_at=utc_iso(row.occurred_at), correlation_id=row.correlation_id, causation_id=row.cause_event_id,
        payload={"chain_id": row.chain_id, "contract": row.contract, "escrow_id": str(row.escrow_id),
                 "depositor": row.depositor, "asset": row.asset_symbol, "previous_tier": row.previous_tier,
                 "tier": row.tier, "health_factor": str(row.health_factor), "price": str(row.price),
                 "collateral_amount": str(row.collateral_amount), "obligation_usd": str(row.obligation_usd),
                 "price_event_id": row.price_event_id, "snapshot_id": row.snapshot_id})


def message(row: Any, extra_attributes: dict[str, str] | None = None) -> OutgoingMessage:
    """The margin event as it goes on the wire; its tier is an attribute too, for subscription filters."""
    event = envelope(row)
    return OutgoingMessage(topics.MARGIN_EVENTS, outbox.wire_bytes(event.to_json()),
                           {**event.attributes(), "tier": row.tier, **(extra_attributes or {})})


def publish_round(engine: Engine, project_id: str, timeout: float) -> int:
    """Publish up to PUBLISH_ROUND unpublished margin events, oldest first; return how many were sent."""
    with transaction(engine) as conn:
        rows = conn.execute(_UNPUBLISHED, {"limit": PUBLISH_ROUND}).all()
        if not rows:
            return 0
        message_ids = publish_all(project_id, [message(row) for row in rows], timeout)
        event_ids, sent_ids = outbox.sent_pairs([row.event_id for row in rows], message_ids)
        conn.execute(_MARK_PUBLISHED, {"event_ids": event_ids, "message_ids": sent_ids})
    log.info("published margin events", extra={"count": len(rows)})
    return len(rows)


def drain(engine: Engine, project_id: str, timeout: float, deadline: float) -> int:
    """Publish rounds until none is left or the `deadline` (time.monotonic()) has passed; at least one
    round. Returns how many events were sent."""
    total = 0
    while True:
        sent = publish_round(engine, project_id, timeout)
        total += sent
        if sent < PUBLISH_ROUND or time.monotonic() >= deadline:
            return total


def publish_after_commit(project_id: str, timeout: float) -> AfterCommit:
    """assess-margin's after-commit step: publish the events its pass recorded (and any left from an
    earlier delivery) until the delivery's drains must end (shared/messaging/consumer.py); the rest goes
    with the next delivery or the reconciler."""
    def publish(engine: Engine, _envelope: Envelope, drain_until: float) -> None:
        drain(engine, project_id, timeout, drain_until)
    return publish
