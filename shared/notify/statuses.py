"""Delivery statuses, and how provider callbacks move them.

    pending -> sent -> delivered | bounced | undelivered | failed        (email, SMS: by callback)
    pending -> delivered                                                (webhook: its 2xx is the receipt)
    pending -> failed                                                   (permanent error, or attempts exhausted)

A callback can arrive before the commit that records the provider's message id (the provider answers,
then calls back at once). Callbacks are therefore stored first and applied twice over: by the
callback itself when the delivery is already known, and by the sender right after it records `sent`.
A callback matched by provider id (Twilio) and the sender take the same advisory lock on that id, so
one of them always sees the other's commit; a callback naming its delivery (SendGrid) waits on the
delivery's row lock, which the sender holds until it commits.
"""

from __future__ import annotations

import functools

from shared.db import Connection, sql
from shared.notify import SCHEMA

PENDING = "pending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"

# Provider event -> the delivery status it means; absent: informational, recorded only.
CALLBACK_STATUSES = {
    "sendgrid": {"delivered": DELIVERED, "bounce": "bounced", "dropped": FAILED},
    "twilio": {"delivered": DELIVERED, "undelivered": "undelivered", "failed": FAILED},
}
# The channel each provider carries: its callbacks can move deliveries of that channel only, so an id
# that happens to match a delivery of another channel moves nothing.
PROVIDER_CHANNELS = {"sendgrid": "email", "twilio": "sms"}
# Statuses a callback may move a delivery out of: only forward, never out of a final status.
OPEN_STATUSES = (PENDING, SENT)

# A delivery without a provider message id compares equal to none (`= NULL`), never to every callback that
# has none.
_EARLY_CALLBACKS = sql(f"SELECT provider, event FROM {SCHEMA}.provider_events "
                       "WHERE delivery_id = :delivery_id OR provider_message_id = :provider_message_id ORDER BY id")
_LOCK_PROVIDER_MESSAGE = sql("SELECT pg_advisory_xact_lock(hashtext('notify.provider_message'), hashtext(:m))")


@functools.cache
def _move_open_delivery(by: str):
    """An open delivery of a channel, found `by` its id or its provider message id, moved to :status."""
    return sql(f"UPDATE {SCHEMA}.deliveries SET status = :status, reason = :reason, updated_at = now() "
               f"WHERE {by} = :match AND channel = :channel AND status = ANY(CAST(:open AS text[])) RETURNING id")


def lock_provider_message(conn: Connection, provider_message_id: str) -> None:
    """Serialise the sender's `sent` and a callback about the same provider message (this transaction)."""
    conn.execute(_LOCK_PROVIDER_MESSAGE, {"m": provider_message_id})


def apply_callback_status(conn: Connection, provider: str, event: str, *, delivery_id: int | None,
                          provider_message_id: str | None) -> str | None:
    """Move the open delivery the callback is about; return the new status, or None if none moved."""
    status = CALLBACK_STATUSES[provider].get(event)
    if status is None:
        return None
    by, match = ("id", delivery_id) if delivery_id is not None else ("provider_message_id", provider_message_id)
    moved = conn.execute(_move_open_delivery(by), {
        "status": status, "reason": f"{provider}: {event}", "match": match, "channel": PROVIDER_CHANNELS[provider],
        "open": list(OPEN_STATUSES)}).first()
    return status if moved else None


def apply_early_callbacks(conn: Connection, delivery_id: int, provider_message_id: str | None) -> None:
    """Apply callbacks that arrived before the delivery was recorded as sent, in arrival order."""
    early = conn.execute(_EARLY_CALLBACKS, {"delivery_id": delivery_id,
                                            "provider_message_id": provider_message_id}).tuples().all()
    for provider, event in early:
        apply_callback_status(conn, str(provider), str(event), delivery_id=delivery_id, provider_message_id=None)
