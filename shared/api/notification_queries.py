"""Notification history for the query API, read from the notify schema."""

from __future__ import annotations

from shared.db import Connection, sql

_HISTORY = """
SELECT d.id, d.event_id, d.event_type, d.channel, d.recipient, d.status, d.reason, d.provider_message_id,
       d.attempts, d.correlation_id, d.created_at, d.updated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'outcome', a.outcome,
                                                     'status_code', a.status_code, 'detail', a.detail,
                                                     'at', a.finished_at) ORDER BY a.attempt)
                 FROM notify.delivery_attempts a WHERE a.delivery_id = d.id), '[]'::jsonb) AS attempt_log
FROM notify.deliveries d
WHERE d.user_id = :user_id
ORDER BY d.created_at DESC, d.id DESC
LIMIT :limit
"""


def notification_history(conn: Connection, user_id: str, limit: int = 100) -> list[dict]:
    """The user's most recent deliveries, newest first, each with its attempts."""
    rows = conn.execute(sql(_HISTORY), {"user_id": user_id, "limit": limit}).mappings().all()
    return [{
        "id": row["id"], "event_id": row["event_id"], "event_type": row["event_type"], "channel": row["channel"],
        "recipient": row["recipient"], "status": row["status"], "reason": row["reason"],
        "provider_message_id": row["provider_message_id"], "attempts": row["attempts"],
        "correlation_id": row["correlation_id"], "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "attempt_log": [{**a, "at": str(a["at"])} for a in row["attempt_log"]],
    } for row in rows]
