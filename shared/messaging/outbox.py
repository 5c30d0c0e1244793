"""The outbox: events are written in the same transaction as the effect, then published."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from shared.db import transaction
from shared.envelope import Envelope
from shared.messaging.tables import messaging_tables
from shared.pubsub import OutgoingMessage, publish_all

log = logging.getLogger(__name__)

# One publish round sends at most this many rows (one transaction, one batch of publish futures).
PUBLISH_BATCH = 500
# How long a consumer keeps publishing rounds after its handler (`drain`): a handler that staged 100k
# margin events gets them out in the same invocation; anything left goes with the next one, or the
# reconciler publishes it.
DRAIN_SECONDS = 20.0


def enqueue(conn: Connection, schema: str, topic: str, envelope: Envelope,
            extra_attributes: dict[str, str] | None = None) -> bool:
    """Add an event to the outbox; False when its dedupe key is already there (kept as it was)."""
    outbox = messaging_tables(schema).outbox
    inserted = conn.execute(
        insert(outbox)
        .values(
            dedupe_key=envelope.dedupe_key,
            event_id=envelope.event_id,
            topic=topic,
            envelope=envelope.to_json(),
            attributes={**envelope.attributes(), **(extra_attributes or {})},
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(outbox.c.id)
    ).first()
    return inserted is not None


@dataclass(frozen=True)
class Staged:
    """An outbox row this transaction added, held in memory to be published after commit."""

    id: int
    message: OutgoingMessage


def enqueue_many(conn: Connection, schema: str, topic: str,
                 events: list[tuple[Envelope, dict[str, str]]]) -> list[Staged]:
    """Add many events (with their extra attributes) in one statement, in order; known dedupe keys are
    kept as they were. Returns the rows added, ready for `publish_staged` once the transaction commits.

    The rows go as one JSON document (`jsonb_to_recordset … WITH ORDINALITY`): the statement's text is
    the same for 1 event or 10,000, and the outbox ids follow the list's order, the order of publishing.
    """
    if not events:
        return []
    rows: list[dict[str, Any]] = [
        {"dedupe_key": envelope.dedupe_key, "event_id": envelope.event_id, "envelope": envelope.to_json(),
         "attributes": {**envelope.attributes(), **extra}} for envelope, extra in events]
    inserted = conn.execute(text(
        f"INSERT INTO {schema}.outbox (dedupe_key, event_id, topic, envelope, attributes) "
        "SELECT e.dedupe_key, e.event_id, :topic, e.envelope, e.attributes "
        "FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) "
        "AS (dedupe_key text, event_id text, envelope jsonb, attributes jsonb)) "
        "WITH ORDINALITY AS e(dedupe_key, event_id, envelope, attributes, position) "
        "ORDER BY e.position ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key"
    ), {"topic": topic, "rows": json.dumps(rows)}).all()
    added = {row.dedupe_key: row.id for row in inserted}
    # The first of the rows sharing a dedupe key is the one stored (the others conflicted with it).
    staged = {}
    for row in rows:
        if row["dedupe_key"] in added and row["dedupe_key"] not in staged:
            staged[row["dedupe_key"]] = Staged(added[row["dedupe_key"]], OutgoingMessage(
                topic, wire_bytes(row["envelope"]), row["attributes"]))
    return sorted(staged.values(), key=lambda s: s.id)


def wire_bytes(envelope: dict) -> bytes:
    """A stored envelope as it goes on the wire (the same bytes on every republish)."""
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def publish_pending(engine: Engine, schema: str, project_id: str, timeout: float) -> int:
    """Publish the outbox rows not yet published, oldest first; return how many were sent.

    The rows stay locked (SKIP LOCKED) while their publish is in flight, so two instances draining
    at once do not send the same row twice; a failed publish rolls back and leaves them pending.
    """
    outbox = messaging_tables(schema).outbox
    with transaction(engine) as conn:
        rows = conn.execute(
            select(outbox.c.id, outbox.c.topic, outbox.c.envelope, outbox.c.attributes)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.id)
            .limit(PUBLISH_BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        messages = [
            OutgoingMessage(topic=row.topic, data=wire_bytes(row.envelope), attributes=dict(row.attributes))
            for row in rows
        ]
        _mark_published(conn, schema, [row.id for row in rows], publish_all(project_id, messages, timeout))
    log.info("published outbox rows", extra={"schema": schema, "count": len(rows)})
    return len(rows)


def publish_staged(engine: Engine, schema: str, project_id: str, timeout: float, staged: list[Staged]) -> int:
    """Publish committed rows from memory (no read-back of their envelopes), in rounds of PUBLISH_BATCH.

    Each round locks the ids still unpublished (SKIP LOCKED, as `publish_pending` does), so a row another
    instance is sending, or has sent, is left alone; a failed publish leaves the rest for `drain`.
    """
    sent = 0
    for start in range(0, len(staged), PUBLISH_BATCH):
        round_ = staged[start:start + PUBLISH_BATCH]
        with transaction(engine) as conn:
            pending: set[int] = set(conn.execute(text(
                f"SELECT id FROM {schema}.outbox WHERE id = ANY(CAST(:ids AS bigint[])) AND published_at IS NULL "
                "FOR UPDATE SKIP LOCKED"
            ), {"ids": [s.id for s in round_]}).scalars())
            ready = [s for s in round_ if s.id in pending]
            if ready:
                message_ids = publish_all(project_id, [s.message for s in ready], timeout)
                _mark_published(conn, schema, [s.id for s in ready], message_ids)
        sent += len(ready)
    if sent:
        log.info("published outbox rows", extra={"schema": schema, "count": sent})
    return sent


def _mark_published(conn: Connection, schema: str, ids: list[int], message_ids: Sequence[str]) -> None:
    # One statement for the whole batch (an executemany would be one round trip per row).
    conn.execute(
        text(
            f"UPDATE {schema}.outbox AS o SET published_at = now(), message_id = sent.message_id "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:message_ids AS text[])) AS sent(id, message_id) "
            "WHERE o.id = sent.id"
        ),
        {"ids": ids, "message_ids": list(message_ids)},
    )


def drain(engine: Engine, schema: str, project_id: str, timeout: float, deadline: float) -> int:
    """Publish rounds until the outbox is empty or the `deadline` (time.monotonic()) has passed; at least
    one round. Returns how many rows were sent."""
    total = 0
    while True:
        sent = publish_pending(engine, schema, project_id, timeout)
        total += sent
        if sent < PUBLISH_BATCH or time.monotonic() >= deadline:
            return total


def count_unpublished(conn: Connection, schema: str) -> int:
    """How many outbox rows of `schema` still wait to be published."""
    outbox = messaging_tables(schema).outbox
    return conn.execute(select(func.count()).where(outbox.c.published_at.is_(None))).scalar_one()
