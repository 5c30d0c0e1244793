"""Delivery status callbacks: SendGrid's signed event webhook and Twilio's status callbacks.

The endpoint is public, so nothing is believed unsigned: SendGrid's events carry an ECDSA (P-256,
SHA-256) signature over timestamp + body, checked with the SDK's EventWebhook helper against the
account's verification key; Twilio's carry `X-Twilio-Signature`, checked by the SDK's RequestValidator
against the auth token and the exact callback URL. A SendGrid signature whose signed timestamp is
more than SENDGRID_TIMESTAMP_TOLERANCE_SECONDS from now is refused, so a captured request cannot be
replayed later. A signed body that is not what the provider sends is answered 400 and kept in
`notify.rejected_messages` with the reason. Each provider event is recorded once
(`notify.provider_events`, unique per provider and event id), so a duplicate callback changes nothing;
a delivery only moves forward, from sent to delivered, bounced, undelivered or failed, and only a
delivery of the provider's own channel (SendGrid: email, Twilio: SMS).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, jsonify, request
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from twilio.request_validator import RequestValidator

from shared.db import Connection, get_engine, sql, transaction
from shared.errors import InvalidRequest
from shared.events import MAX_BIGINT, MAX_ID_LENGTH
from shared.messaging.rejections import record_rejection
from shared.notify import SCHEMA
from shared.notify.settings import CallbackSettings
from shared.notify.statuses import apply_callback_status, lock_provider_message
from shared.problems import install as install_problems
from shared.problems import problem
from shared.settings import Settings
from shared.text import MAX_NESTING, too_deep, unstorable_text

log = logging.getLogger(__name__)

# How far a SendGrid signature's timestamp may be from now (SendGrid signs each POST, retries included).
SENDGRID_TIMESTAMP_TOLERANCE_SECONDS = 600
# The consumer name callbacks' refusals are recorded under in notify.rejected_messages.
CALLBACKS = "callbacks"
# Most events one SendGrid POST carries; SendGrid batches up to about a thousand.
MAX_EVENTS_PER_POST = 5000

@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    provider_event_id: str
    event: str
    delivery_id: int | None
    provider_message_id: str | None
    body: dict


# Each provider event once (the provider retries its callbacks).
_RECORD_PROVIDER_EVENT = sql(
    f"INSERT INTO {SCHEMA}.provider_events (provider, provider_event_id, event, delivery_id, provider_message_id, "
    "body) VALUES (:provider, :provider_event_id, :event, :delivery_id, :provider_message_id, CAST(:body AS jsonb)) "
    "ON CONFLICT ON CONSTRAINT provider_events_once DO NOTHING RETURNING id")


def record(conn: Connection, item: ProviderEvent) -> str:
    """Store one provider event and apply it; return what happened (for the log and the tests)."""
    if item.delivery_id is None and item.provider_message_id:
        # Matched by provider id (Twilio): serialise with the sender recording that id. A callback that
        # names its delivery (SendGrid's custom arg) waits on the delivery's row lock instead; taking
        # the advisory lock too would deadlock with a sender holding the row and asking for it.
        lock_provider_message(conn, item.provider_message_id)
    inserted = conn.execute(_RECORD_PROVIDER_EVENT, {
        "provider": item.provider, "provider_event_id": item.provider_event_id, "event": item.event,
        "delivery_id": item.delivery_id, "provider_message_id": item.provider_message_id,
        "body": json.dumps(item.body)}).first()
    if inserted is None:
        return "duplicate"
    status = apply_callback_status(conn, item.provider, item.event, delivery_id=item.delivery_id,
                                   provider_message_id=item.provider_message_id)
    # Not moved: informational, or about a delivery whose `sent` is not committed yet (the sender
    # applies it then), or already final.
    return f"moved to {status}" if status else "recorded"


def sendgrid_events_of(body: str) -> list[ProviderEvent]:
    """The provider events in a verified SendGrid POST; InvalidRequest naming what is malformed."""
    try:
        events = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest({"body": "is not JSON, or nested too deeply"}) from exc
    if too_deep(events):
        raise InvalidRequest({"body": f"is nested too deeply (more than {MAX_NESTING} levels)"})
    if not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS_PER_POST:
        raise InvalidRequest({"body": f"must be a list of 1 to {MAX_EVENTS_PER_POST} events"})
    unstorable = unstorable_text(events)
    if unstorable:
        raise InvalidRequest({unstorable[0]: unstorable[1]})
    items = []
    for index, event in enumerate(events):
        where = f"[{index}]"
        if not isinstance(event, dict):
            raise InvalidRequest({where: "must be an object"})
        event_id, kind = event.get("sg_event_id"), event.get("event")
        if not _short_text(event_id) or not _short_text(kind):
            raise InvalidRequest({where: "must carry sg_event_id and event as strings"})
        custom = event.get("delivery_id")
        if custom is not None and not (isinstance(custom, str) and custom.isascii() and custom.isdigit()
                                       and 0 < int(custom) <= MAX_BIGINT):
            raise InvalidRequest({f"{where}.delivery_id": "must be a delivery id this platform sent"})
        message_id = event.get("sg_message_id")
        if message_id is not None and not _short_text(message_id):
            raise InvalidRequest({f"{where}.sg_message_id": "must be a string"})
        items.append(ProviderEvent("sendgrid", str(event_id), str(kind), int(custom) if custom else None,
                                   (message_id or "").split(".")[0] or None, event))
    return items


def _short_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def _fresh(timestamp: str, now: float) -> bool:
    return timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12 \
        and abs(now - int(timestamp)) <= SENDGRID_TIMESTAMP_TOLERANCE_SECONDS


def create_app(settings: Settings) -> Flask:
    """The callbacks endpoint bound to one set of settings."""
    notify = settings.part(CallbackSettings)
    app = Flask("callbacks")
    install_problems(app)
    sendgrid = EventWebhook(notify.sendgrid_webhook_public_key)
    twilio = RequestValidator(notify.twilio_auth_token)

    def engine():
        return get_engine(settings.database)

    def refuse(provider: str, raw: bytes, exc: InvalidRequest):
        """Keep a signed but malformed callback with its reason, and answer 400."""
        digest = hashlib.sha256(raw).hexdigest()
        with transaction(engine()) as conn:
            record_rejection(conn, SCHEMA, CALLBACKS, f"{provider}:{digest}", None, str(exc), raw,
                             {"provider": provider})
        log.warning("malformed signed callback refused", extra={"provider": provider, "reason": str(exc)})
        return problem(400, "Invalid callback", str(exc), problems=exc.problems)

    @app.post("/sendgrid/events")
    def sendgrid_events():
        raw = request.get_data()
        body = raw.decode("utf-8", errors="replace")
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        if not signature or not timestamp or not _verified(sendgrid, body, signature, timestamp):
            log.warning("SendGrid event webhook with a bad signature refused")
            return problem(403, "Forbidden", "bad signature")
        if not _fresh(timestamp, time.time()):
            log.warning("SendGrid event webhook outside the timestamp window refused",
                        extra={"signed_timestamp": timestamp[:20]})
            return problem(403, "Forbidden", f"signed timestamp outside {SENDGRID_TIMESTAMP_TOLERANCE_SECONDS}s")
        try:
            items = sendgrid_events_of(body)
        except InvalidRequest as exc:
            return refuse("sendgrid", raw, exc)
        outcomes = []
        with transaction(engine()) as conn:
            for item in items:
                outcomes.append(record(conn, item))
        log.info("SendGrid events applied", extra={"outcomes": outcomes})
        return jsonify(outcomes=outcomes), 200

    @app.post("/twilio/status")
    def twilio_status():
        form = request.form.to_dict()
        if not twilio.validate(notify.twilio_status_callback_url, form,
                               request.headers.get("X-Twilio-Signature", "")):
            log.warning("Twilio status callback with a bad signature refused")
            return problem(403, "Forbidden", "bad signature")
        sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
        unstorable = unstorable_text(form)
        if unstorable:
            return refuse("twilio", request.get_data(), InvalidRequest({unstorable[0]: unstorable[1]}))
        if not _short_text(sid) or not _short_text(status):
            field = "MessageSid" if not _short_text(sid) else "MessageStatus"
            return refuse("twilio", request.get_data(),
                          InvalidRequest({field: f"must be present, at most {MAX_ID_LENGTH} characters"}))
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

