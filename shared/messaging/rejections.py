"""The record of messages a consumer refused for good: `<schema>.rejected_messages`, one row per consumer
and message, its delivery count raised each time the same message is refused again."""

from __future__ import annotations

import functools
import json

from shared.db import Connection, sql


@functools.cache
def _record(schema: str):
    return sql(
        f"INSERT INTO {schema}.rejected_messages AS r (consumer, message_id, event_id, reason, body, attributes) "
        "VALUES (:consumer, :message_id, :event_id, :reason, :body, CAST(:attributes AS jsonb)) "
        "ON CONFLICT (consumer, message_id) "
        "DO UPDATE SET delivery_count = r.delivery_count + 1, last_seen_at = EXCLUDED.last_seen_at")


def record_rejection(conn: Connection, schema: str, consumer: str, message_id: str, event_id: str | None,
                     reason: str, body: bytes, attributes: dict[str, str]) -> None:
    """Record (or count once more) `consumer`'s refusal of a message, with the body as it came."""
    conn.execute(_record(schema), {"consumer": consumer, "message_id": message_id, "event_id": event_id,
                                   "reason": reason, "body": body, "attributes": json.dumps(attributes)})
