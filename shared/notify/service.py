"""notify's handler and its sender.

In the consumer's transaction (inbox, effect, outbox): a `UserRegistered` updates the contact
projection; a `MarginTierChanged` creates one pending delivery per channel of the depositor's contact.
After the commit, on the first delivery and on every redelivery (`after_commit`), the pending
deliveries of the event are attempted, each under its own row lock, each attempt recorded: a few quick
attempts in the call, then, if a transient failure is left, the call raises so Pub/Sub redelivers
the event with its backoff, up to NOTIFY_MAX_ATTEMPTS in all. A channel that went out is never sent
again, and one channel's failure never blocks the others.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from shared.db import Connection, Engine, connection, sql
from shared.envelope import Envelope
from shared.errors import InvalidEvent, RetryableError
from shared.events import (
    MARGIN_ALERT_RETRACTED,
    MARGIN_TIER_CHANGED,
    USER_REGISTERED,
    MarginTierChangedV1,
    UserRegisteredV1,
)
from shared.messaging.consumer import Outgoing
from shared.notify import SCHEMA
from shared.notify.channels import (
    PERMANENT,
    SENT,
    EmailChannel,
    Outbound,
    SmsChannel,
    WebhookChannel,
    endpoint_secret,
)
from shared.notify.settings import NotifySettings
from shared.notify.statuses import DELIVERED, FAILED, PENDING, apply_early_callbacks, lock_provider_message

log = logging.getLogger(__name__)

# Between the quick attempts inside one call: 0.5 s, 1 s, …
IN_CALL_BACKOFF_SECONDS = 0.5
# Delivery statuses that mean the alert went out to the user (a correction follows on the same channel).
ALERT_REACHED_USER = (SENT, DELIVERED)

# A user's contact and the wallets it covers, as registered (a later registration rewrites them).
_PROJECT_CONTACT = sql(
    f"INSERT INTO {SCHEMA}.contacts (user_id, email, phone, channels, webhook_url, registered_event_id) "
    "VALUES (:user_id, :email, :phone, CAST(:channels AS jsonb), :webhook_url, :registered_event_id) "
    "ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, "
    "channels = EXCLUDED.channels, webhook_url = EXCLUDED.webhook_url, "
    "registered_event_id = EXCLUDED.registered_event_id, updated_at = now()")
_PROJECT_WALLET = sql(f"INSERT INTO {SCHEMA}.contact_wallets (wallet, user_id) VALUES (:wallet, :user_id) "
                      "ON CONFLICT (wallet) DO UPDATE SET user_id = EXCLUDED.user_id")
_CONTACT_OF_WALLET = sql(f"SELECT c.* FROM {SCHEMA}.contacts c JOIN {SCHEMA}.contact_wallets w "
                         "ON w.user_id = c.user_id WHERE w.wallet = :wallet")
_RECORD_UNROUTED = sql(f"INSERT INTO {SCHEMA}.unrouted_events (event_id, wallet, correlation_id) "
                       "VALUES (:event_id, :wallet, :correlation_id) ON CONFLICT DO NOTHING")
# One delivery per event and channel.
_PLAN_DELIVERY = sql(
    f"INSERT INTO {SCHEMA}.deliveries (event_id, event_type, channel, user_id, recipient, status, reason, "
    "correlation_id, payload) VALUES (:event_id, :event_type, :channel, :user_id, :recipient, :status, :reason, "
    ":correlation_id, CAST(:payload AS jsonb)) ON CONFLICT ON CONSTRAINT deliveries_event_channel DO NOTHING")
# The last alert of each channel that reached the user about an escrow (its correlation id), for its
# correction; read by index (deliveries_by_correlation, migration 0021).
_ALERTS_OF_ESCROW = sql(
    f"SELECT DISTINCT ON (channel) channel, user_id, recipient FROM {SCHEMA}.deliveries "
    "WHERE correlation_id = :correlation_id AND event_type = :alert AND status = ANY(CAST(:reached AS text[])) "
    "ORDER BY channel, id DESC")
_PENDING_OF_EVENT = sql(f"SELECT id FROM {SCHEMA}.deliveries WHERE event_id = :event_id AND status = :pending "
                        "ORDER BY id")
_COUNT_PENDING_OF_EVENT = sql(f"SELECT count(*) FROM {SCHEMA}.deliveries WHERE event_id = :event_id "
                              "AND status = :pending")
# A pending delivery, locked for one attempt; none when it was sent meanwhile or another call holds it.
_LOCK_PENDING = sql(f"SELECT * FROM {SCHEMA}.deliveries WHERE id = :delivery_id AND status = :pending "
                    "FOR UPDATE SKIP LOCKED")
_RECORD_ATTEMPT = sql(
    f"INSERT INTO {SCHEMA}.delivery_attempts (delivery_id, attempt, outcome, status_code, detail, "
    "provider_message_id, started_at) VALUES (:delivery_id, :attempt, :outcome, :status_code, :detail, "
    ":provider_message_id, :started_at)")
_RECORD_OUTCOME = sql(
    f"UPDATE {SCHEMA}.deliveries SET status = :status, reason = :reason, attempts = :attempts, "
    "provider_message_id = :provider_message_id, updated_at = now() WHERE id = :delivery_id")
_DISABLE_WEBHOOK = sql(f"UPDATE {SCHEMA}.contacts SET webhook_enabled = false, updated_at = now() "
                       "WHERE user_id = :user_id")


class DeliveriesPending(RetryableError):
    """Some deliveries of an event failed transiently and will be retried on redelivery."""


class Notifier:
    """notify's domain logic, bound to one instance's settings and provider clients."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.channels: dict[str, EmailChannel | SmsChannel | WebhookChannel] = {
            "email": EmailChannel(settings), "sms": SmsChannel(settings), "webhook": WebhookChannel(settings)}

    # ------------------------------------------------------------------ in the inbox transaction

    def handle(self, conn: Connection, envelope: Envelope) -> Outgoing:
        if envelope.event_type == USER_REGISTERED:
            self._project_contact(conn, envelope)
        elif envelope.event_type == MARGIN_TIER_CHANGED:
            self._plan_deliveries(conn, envelope)
        elif envelope.event_type == MARGIN_ALERT_RETRACTED:
            self._plan_corrections(conn, envelope)
        else:
            raise InvalidEvent(f"notify does not consume {envelope.event_type}", event_id=envelope.event_id)
        return []

    def _project_contact(self, conn: Connection, envelope: Envelope) -> None:
        p = envelope.typed(UserRegisteredV1)
        row = {"user_id": p.user_id, "email": p.email, "phone": p.phone,
               "channels": p.notification_channels, "webhook_url": p.webhook_url,
               "registered_event_id": envelope.event_id}
        conn.execute(_PROJECT_CONTACT, {**row, "channels": json.dumps(row["channels"])})
        for wallet in p.wallet_addresses:
            conn.execute(_PROJECT_WALLET, {"wallet": wallet.lower(), "user_id": p.user_id})
        log.info("contact projected", extra={"user_id": p.user_id, "channels": p.notification_channels})

    def _plan_deliveries(self, conn: Connection, envelope: Envelope) -> None:
        p = envelope.typed(MarginTierChangedV1)
        contact = conn.execute(_CONTACT_OF_WALLET, {"wallet": p.depositor.lower()}).mappings().first()
        if contact is None:
            # Escrows are permissionless: a depositor need not be a registered user. Kept, not retried.
            conn.execute(_RECORD_UNROUTED, {"event_id": envelope.event_id, "wallet": p.depositor,
                                            "correlation_id": envelope.correlation_id})
            log.info("no registered user owns the wallet; nothing to notify",
                     extra={"event_id": envelope.event_id, "wallet": p.depositor})
            return
        planned = []
        for channel in contact["channels"]:
            recipient = {"email": contact["email"], "sms": contact["phone"],
                         "webhook": contact["webhook_url"]}.get(channel)
            status, reason = PENDING, None
            if channel == "webhook" and not contact["webhook_enabled"]:
                status, reason = FAILED, "endpoint disabled after a 410 Gone"
            if recipient is None:
                status, reason, recipient = FAILED, f"no {channel} address", ""
            conn.execute(_PLAN_DELIVERY, {
                "event_id": envelope.event_id, "event_type": envelope.event_type, "channel": channel,
                "user_id": contact["user_id"], "recipient": recipient, "status": status, "reason": reason,
                "correlation_id": envelope.correlation_id, "payload": envelope.canonical_json})
            planned.append(channel)
        log.info("deliveries planned", extra={"event_id": envelope.event_id, "user_id": contact["user_id"],
                                              "channels": planned})

    def _plan_corrections(self, conn: Connection, envelope: Envelope) -> None:
        """One correction per channel that carried an alert about the voided escrow, to the same recipient.

        The alerts are found by the escrow's correlation id, which is its creation log's: an escrow id
        reused after the reorg has another, so its own alerts are never retracted.
        """
        alerted = conn.execute(_ALERTS_OF_ESCROW, {"correlation_id": envelope.correlation_id,
                                                   "alert": MARGIN_TIER_CHANGED,
                                                   "reached": list(ALERT_REACHED_USER)}).mappings().all()
        for alert in alerted:
            conn.execute(_PLAN_DELIVERY, {
                "event_id": envelope.event_id, "event_type": envelope.event_type, "channel": alert["channel"],
                "user_id": alert["user_id"], "recipient": alert["recipient"], "status": PENDING, "reason": None,
                "correlation_id": envelope.correlation_id, "payload": envelope.canonical_json})
        log.info("corrections planned", extra={"event_id": envelope.event_id,
                                               "channels": [a["channel"] for a in alerted]})

    # ------------------------------------------------------------------ after the commit

    def send_pending(self, engine: Engine, envelope: Envelope, _drain_until: float) -> None:
        """Attempt every pending delivery of the event; raise DeliveriesPending if some must be retried.

        One pooled connection serves the call's transactions: the lookup, then each attempt's own. An event
        has a delivery per channel (three at most), each with NOTIFY_ATTEMPTS_PER_CALL quick attempts, so
        the call needs no deadline of its own."""
        if envelope.event_type not in (MARGIN_TIER_CHANGED, MARGIN_ALERT_RETRACTED):
            return
        event = {"event_id": envelope.event_id, "pending": PENDING}
        with connection(engine) as conn:
            with conn.begin():
                ids: list[int] = conn.execute(_PENDING_OF_EVENT, event).scalars().all()  # type: ignore[assignment]
            statuses = [self._attempts_in_this_call(conn, delivery_id) for delivery_id in ids]
            if None in statuses:
                # Counted again, not inferred: a delivery skipped because another call held its lock is
                # still pending too, and acknowledging the event now would abandon it.
                with conn.begin():
                    still_pending: int = conn.execute(_COUNT_PENDING_OF_EVENT, event).scalar_one()
            else:  # each status was written under the delivery's lock, and a delivery never returns to pending
                still_pending = statuses.count(PENDING)
        if still_pending:
            raise DeliveriesPending(f"{still_pending} deliveries of {envelope.event_id} will be retried")

    def _attempts_in_this_call(self, conn: Connection, delivery_id: int) -> str | None:
        """A few quick attempts (short backoff) before leaving it to Pub/Sub's slower redelivery; returns
        the status the last one left, or None when the delivery was not there to attempt.

        Raising for every transient failure would make Pub/Sub slow down the whole push subscription
        (it backs off on errors), holding up every other user's alerts behind one flaky endpoint.
        """
        status = None
        for attempt in range(self.settings.attempts_per_call):
            status = self._attempt(conn, delivery_id)
            if status != PENDING:
                return status
            if attempt + 1 < self.settings.attempts_per_call:
                time.sleep(IN_CALL_BACKOFF_SECONDS * 2**attempt)
        return status

    def _attempt(self, conn: Connection, delivery_id: int) -> str | None:
        """One attempt of one delivery under its row lock, in a transaction of its own; returns the
        delivery's new status, or None when it was sent meanwhile or another call holds it right now."""
        with conn.begin():
            delivery = conn.execute(_LOCK_PENDING, {"delivery_id": delivery_id, "pending": PENDING}).mappings().first()
            if delivery is None:
                return None
            started = datetime.now(UTC)
            result = self.channels[delivery["channel"]].send(self._outbound(delivery))
            if result.provider_message_id:
                lock_provider_message(conn, result.provider_message_id)
            attempt = delivery["attempts"] + 1
            conn.execute(_RECORD_ATTEMPT, {
                "delivery_id": delivery_id, "attempt": attempt, "outcome": result.outcome,
                "status_code": result.status_code, "detail": result.detail,
                "provider_message_id": result.provider_message_id, "started_at": started})
            if result.outcome == SENT:
                # A webhook's 2xx is its receipt; email and SMS wait for the provider's callback.
                status, reason = (DELIVERED if delivery["channel"] == "webhook" else SENT), None
            elif result.outcome == PERMANENT:
                status, reason = FAILED, result.detail
            elif attempt >= self.settings.max_attempts:
                status, reason = FAILED, f"gave up after {attempt} attempts: {result.detail}"
            else:
                status, reason = PENDING, result.detail
            conn.execute(_RECORD_OUTCOME, {
                "delivery_id": delivery_id, "status": status, "reason": reason, "attempts": attempt,
                "provider_message_id": result.provider_message_id or delivery["provider_message_id"]})
            if status == SENT:
                apply_early_callbacks(conn, delivery_id, result.provider_message_id)
            if result.disable_endpoint:
                conn.execute(_DISABLE_WEBHOOK, {"user_id": delivery["user_id"]})
        log.info("delivery attempted", extra={
            "delivery_id": delivery_id, "channel": delivery["channel"], "attempt": attempt,
            "outcome": result.outcome, "status": status, "status_code": result.status_code})
        return status

    def _outbound(self, delivery) -> Outbound:
        event = delivery["payload"]
        p = event["payload"]
        if event["event_type"] == MARGIN_ALERT_RETRACTED:
            subject = f"Correction: escrow #{p['escrow_id']} alert withdrawn"
            text = (f"Disregard the {p['retracted_tier']} alert about escrow #{p['escrow_id']} on {p['contract']}: "
                    f"{p['reason']}.")
            kind = "margin.alert_retracted"
        else:
            subject = f"{p['tier'].replace('_', ' ').title()}: escrow #{p['escrow_id']}"
            text = (f"Escrow #{p['escrow_id']} on {p['contract']} moved from {p['previous_tier']} to {p['tier']}: "
                    f"health factor {p['health_factor']} at {p['asset']} {p['price']} USD.")
            kind = "margin.tier_changed"
        secret = (endpoint_secret(self.settings.webhook_signing_key, delivery["user_id"])
                  if delivery["channel"] == "webhook" else None)
        document = {"type": kind, "event_id": event["event_id"], "occurred_at": event["occurred_at"], "data": p}
        return Outbound(delivery_id=delivery["id"], event_id=event["event_id"], recipient=delivery["recipient"],
                        subject=subject, text=text, document=document, secret=secret)
