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

import logging
import time
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from shared.db import transaction
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
from shared.notify.tables import contact_wallets, contacts, deliveries, delivery_attempts, unrouted_events

log = logging.getLogger(__name__)

# Between the quick attempts inside one call: 0.5 s, 1 s, …
IN_CALL_BACKOFF_SECONDS = 0.5
# Delivery statuses that mean the alert went out to the user (a correction follows on the same channel).
ALERT_REACHED_USER = (SENT, DELIVERED)



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
        statement = insert(contacts).values(**row)
        conn.execute(statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={**{k: statement.excluded[k] for k in row if k != "user_id"}, "updated_at": func.now()}))
        for wallet in p.wallet_addresses:
            statement = insert(contact_wallets).values(wallet=wallet.lower(), user_id=p.user_id)
            conn.execute(statement.on_conflict_do_update(index_elements=["wallet"],
                                                         set_={"user_id": statement.excluded.user_id}))
        log.info("contact projected", extra={"user_id": p.user_id, "channels": p.notification_channels})

    def _plan_deliveries(self, conn: Connection, envelope: Envelope) -> None:
        p = envelope.typed(MarginTierChangedV1)
        contact = conn.execute(
            select(contacts).join(contact_wallets, contact_wallets.c.user_id == contacts.c.user_id)
            .where(contact_wallets.c.wallet == p.depositor.lower())
        ).mappings().first()
        if contact is None:
            # Escrows are permissionless: a depositor need not be a registered user. Kept, not retried.
            conn.execute(insert(unrouted_events).values(
                event_id=envelope.event_id, wallet=p.depositor, correlation_id=envelope.correlation_id,
            ).on_conflict_do_nothing())
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
            conn.execute(insert(deliveries).values(
                event_id=envelope.event_id, event_type=envelope.event_type, channel=channel,
                user_id=contact["user_id"], recipient=recipient, status=status, reason=reason,
                correlation_id=envelope.correlation_id, payload=envelope.to_json(),
            ).on_conflict_do_nothing(constraint="deliveries_event_channel"))
            planned.append(channel)
        log.info("deliveries planned", extra={"event_id": envelope.event_id, "user_id": contact["user_id"],
                                              "channels": planned})

    def _plan_corrections(self, conn: Connection, envelope: Envelope) -> None:
        """One correction per channel that carried an alert about the voided escrow, to the same recipient.

        The alerts are found by the escrow's correlation id, which is its creation log's: an escrow id
        reused after the reorg has another, so its own alerts are never retracted.
        """
        alerted = conn.execute(
            select(deliveries.c.channel, deliveries.c.user_id, deliveries.c.recipient)
            .where(deliveries.c.correlation_id == envelope.correlation_id,
                   deliveries.c.event_type == MARGIN_TIER_CHANGED,
                   deliveries.c.status.in_(ALERT_REACHED_USER))
            .distinct(deliveries.c.channel).order_by(deliveries.c.channel, deliveries.c.id.desc())
        ).mappings().all()
        for alert in alerted:
            conn.execute(insert(deliveries).values(
                event_id=envelope.event_id, event_type=envelope.event_type, channel=alert["channel"],
                user_id=alert["user_id"], recipient=alert["recipient"], status=PENDING,
                correlation_id=envelope.correlation_id, payload=envelope.to_json(),
            ).on_conflict_do_nothing(constraint="deliveries_event_channel"))
        log.info("corrections planned", extra={"event_id": envelope.event_id,
                                               "channels": [a["channel"] for a in alerted]})

    # ------------------------------------------------------------------ after the commit

    def send_pending(self, engine: Engine, envelope: Envelope) -> None:
        """Attempt every pending delivery of the event; raise DeliveriesPending if some must be retried."""
        if envelope.event_type not in (MARGIN_TIER_CHANGED, MARGIN_ALERT_RETRACTED):
            return
        with transaction(engine) as conn:
            ids: list[int] = conn.execute(select(deliveries.c.id).where(
                deliveries.c.event_id == envelope.event_id, deliveries.c.status == PENDING)).scalars().all()  # type: ignore[assignment]
        for delivery_id in ids:
            self._attempts_in_this_call(engine, delivery_id)
        # Counted again, not inferred: a delivery skipped because another call held its lock is
        # still pending too, and acknowledging the event now would abandon it.
        with transaction(engine) as conn:
            still_pending = conn.execute(select(func.count()).where(
                deliveries.c.event_id == envelope.event_id, deliveries.c.status == PENDING)).scalar_one()
        if still_pending:
            raise DeliveriesPending(f"{still_pending} deliveries of {envelope.event_id} will be retried")

    def _attempts_in_this_call(self, engine: Engine, delivery_id: int) -> bool:
        """A few quick attempts (short backoff) before leaving it to Pub/Sub's slower redelivery.

        Raising for every transient failure would make Pub/Sub slow down the whole push subscription
        (it backs off on errors), holding up every other user's alerts behind one flaky endpoint.
        """
        for attempt in range(self.settings.attempts_per_call):
            if not self._attempt(engine, delivery_id):
                return False
            if attempt + 1 < self.settings.attempts_per_call:
                time.sleep(IN_CALL_BACKOFF_SECONDS * 2**attempt)
        return True

    def _attempt(self, engine: Engine, delivery_id: int) -> bool:
        """One attempt of one delivery under its row lock; True when it stays pending."""
        with transaction(engine) as conn:
            delivery = conn.execute(select(deliveries).where(
                deliveries.c.id == delivery_id, deliveries.c.status == PENDING
            ).with_for_update(skip_locked=True)).mappings().first()
            if delivery is None:
                return False  # sent meanwhile, or another instance holds it right now
            started = datetime.now(UTC)
            result = self.channels[delivery["channel"]].send(self._outbound(delivery))
            if result.provider_message_id:
                lock_provider_message(conn, result.provider_message_id)
            attempt = delivery["attempts"] + 1
            conn.execute(insert(delivery_attempts).values(
                delivery_id=delivery_id, attempt=attempt, outcome=result.outcome, status_code=result.status_code,
                detail=result.detail, provider_message_id=result.provider_message_id, started_at=started))
            if result.outcome == SENT:
                # A webhook's 2xx is its receipt; email and SMS wait for the provider's callback.
                status, reason = (DELIVERED if delivery["channel"] == "webhook" else SENT), None
            elif result.outcome == PERMANENT:
                status, reason = FAILED, result.detail
            elif attempt >= self.settings.max_attempts:
                status, reason = FAILED, f"gave up after {attempt} attempts: {result.detail}"
            else:
                status, reason = PENDING, result.detail
            conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
                status=status, reason=reason, attempts=attempt, updated_at=func.now(),
                provider_message_id=result.provider_message_id or delivery["provider_message_id"]))
            if status == SENT:
                apply_early_callbacks(conn, delivery_id, result.provider_message_id)
            if result.disable_endpoint:
                conn.execute(update(contacts).where(contacts.c.user_id == delivery["user_id"])
                             .values(webhook_enabled=False, updated_at=func.now()))
        log.info("delivery attempted", extra={
            "delivery_id": delivery_id, "channel": delivery["channel"], "attempt": attempt,
            "outcome": result.outcome, "status": status, "status_code": result.status_code})
        return status == PENDING

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
