"""Delivery status callbacks: SendGrid's signed event webhook and Twilio's status callbacks.

The endpoint is public, so nothing is believed unsigned: SendGrid's events carry an ECDSA (P-256,
SHA-256) signature over timestamp + body, checked with the SDK's EventWebhook helper against the
account's verification key; Twilio's carry `X-Twilio-Signature`, checked by the SDK's RequestValidator
against the auth token and the exact callback URL. Each provider event is recorded once
(`notify.provider_events`, unique per provider and event id), so a duplicate callback changes nothing;
a delivery only moves forward, from sent to delivered, bounced, undelivered or failed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flask import Flask, jsonify, request
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from twilio.request_validator import RequestValidator

from shared.db import get_engine, transaction
from shared.notify.statuses import apply_callback_status, lock_provider_message
from shared.notify.tables import provider_events
from shared.settings import Settings

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    provider_event_id: str
    event: str
    delivery_id: int | None
    provider_message_id: str | None
    body: dict


def record(conn: Connection, item: ProviderEvent) -> str:
    """Store one provider event and apply it; return what happened (for the log and the tests)."""
    if item.delivery_id is None and item.provider_message_id:
        # Matched by provider id (Twilio): serialise with the sender recording that id. A callback that
        # names its delivery (SendGrid's custom arg) waits on the delivery's row lock instead; taking
        # the advisory lock too would deadlock with a sender holding the row and asking for it.
        lock_provider_message(conn, item.provider_message_id)
    inserted = conn.execute(insert(provider_events).values(
        provider=item.provider, provider_event_id=item.provider_event_id, event=item.event,
        delivery_id=item.delivery_id, provider_message_id=item.provider_message_id, body=item.body,
    ).on_conflict_do_nothing(constraint="provider_events_once").returning(provider_events.c.id)).first()
    if inserted is None:
        return "duplicate"
    status = apply_callback_status(conn, item.provider, item.event, delivery_id=item.delivery_id,
                                   provider_message_id=item.provider_message_id)
    # Not moved: informational, or about a delivery whose `sent` is not committed yet (the sender
    # applies it then), or already final.
    return f"moved to {status}" if status else "recorded"


def create_app(settings: Settings) -> Flask:
    """The callbacks endpoint bound to one set of settings."""
    notify = settings.require_callbacks()
    app = Flask("callbacks")
    sendgrid = EventWebhook(notify.sendgrid_webhook_public_key)
    twilio = RequestValidator(notify.twilio_auth_token)

    def engine():
        return get_engine(settings.database)

    @app.post("/sendgrid/events")
    def sendgrid_events():
        body = request.get_data(as_text=True)
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        if not signature or not timestamp or not _verified(sendgrid, body, signature, timestamp):
            log.warning("SendGrid event webhook with a bad signature refused")
            return jsonify(error="bad signature"), 403
        events = json.loads(body)
        outcomes = []
        with transaction(engine()) as conn:
            for event in events:
                custom = event.get("delivery_id")
                item = ProviderEvent("sendgrid", str(event["sg_event_id"]), str(event["event"]),
                                     int(custom) if custom else None,
                                     str(event.get("sg_message_id", "")).split(".")[0] or None, event)
                outcomes.append(record(conn, item))
        log.info("SendGrid events applied", extra={"outcomes": outcomes})
        return jsonify(outcomes=outcomes), 200

    @app.post("/twilio/status")
    def twilio_status():
        form = request.form.to_dict()
        if not twilio.validate(notify.twilio_status_callback_url, form,
                               request.headers.get("X-Twilio-Signature", "")):
            log.warning("Twilio status callback with a bad signature refused")
            return jsonify(error="bad signature"), 403
        sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
        item = ProviderEvent("twilio", f"{sid}:{status}", status, None, sid, form)
        with transaction(engine()) as conn:
            outcome = record(conn, item)
        log.info("Twilio status applied", extra={"message_sid": sid, "status": status, "outcome": outcome})
        return jsonify(outcome=outcome), 200

    return app


def _verified(webhook: EventWebhook, body: str, signature: str, timestamp: str) -> bool:
    try:
        return webhook.verify_signature(body, signature, timestamp)
    except (ValueError, TypeError):  # not base64, not DER
        return False

