"""notify through the emulator: contacts from users.registered.v1, one delivery per channel for each
margin event, through the real SendGrid and Twilio SDKs into the local vendor servers and a signed
webhook into a receiver of the test's own; failures, retries and redelivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.stack.chain_driver import wait_for
from shared.stack.vendor_server import VendorControl
from tests.support.notify import attempts, contact_email, deliveries, final, sent_to, settled
from tests.support.openapi import assert_matches
from tests.support.webhooks import WebhookReceiver

SIGNING_KEY = "local-stack-webhook_signing_key"  # the stack's local value of the WEBHOOK_SIGNING_KEY secret


def _envelope(event_type: str, payload: dict, correlation_id: str | None = None) -> dict:
    event_id = f"{event_type}:{uuid.uuid4().hex}"
    return {"event_id": event_id, "event_type": event_type, "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": correlation_id or event_id,
            "causation_id": None, "payload": payload}


def _wallet() -> str:
    return "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture
def receiver():
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


@pytest.fixture
def vendors(stack):
    return VendorControl(stack.layout.sendgrid_url), VendorControl(stack.layout.twilio_url)


def _phone() -> str:
    """A number of this test's own (the local Twilio answers `undelivered` for numbers ending 0009)."""
    return f"+1415{uuid.uuid4().int % 10**6:06d}1"


def _register(bus, engine, wallet: str, webhook_url: str | None, phone: str | None = None,
              channels=("email", "sms", "webhook")) -> dict:
    user = {"user_id": uuid.uuid4().hex, "name": "Notify Test", "date_of_birth": "1980-01-01", "country": "US",
            "email": f"notify-{uuid.uuid4().hex[:8]}@example.org", "phone": phone or _phone(),
            "wallet_addresses": [wallet],
            "notification_channels": list(channels), "webhook_url": webhook_url}
    bus.publish("users.registered.v1", json.dumps(_envelope("UserRegistered", user)).encode())
    # Registration and margin events travel on different topics; in production a user registers long
    # before an escrow of theirs is assessed. Margin events for unknown wallets are not waited for.
    wait_for(lambda: contact_email(engine, user["user_id"]), "notify to project the contact")
    return user


def _margin_call(wallet: str) -> dict:
    return _envelope("MarginTierChanged", {
        "chain_id": 31337, "contract": "0x" + "ab" * 20, "escrow_id": "7", "depositor": wallet, "asset": "ETH",
        "previous_tier": "WARNING", "tier": "MARGIN_CALL", "health_factor": "1.10000000", "price": "1500",
        "collateral_amount": "1", "obligation_usd": "1125", "price_event_id": "PriceUpdated:ETH:1",
        "snapshot_id": 1}, correlation_id=f"31337:0x{uuid.uuid4().hex}:0")


def test_a_margin_event_goes_out_on_every_channel_once(stack, bus, owner_engine, receiver, vendors):
    sendgrid, twilio = vendors
    wallet = _wallet()
    user = _register(bus, owner_engine, wallet, receiver.url)
    event = _margin_call(wallet.upper().replace("0X", "0x"))  # wallets match case-insensitively
    bus.publish("risk.margin-events.v1", json.dumps(event).encode())
    rows = final(owner_engine, event["event_id"], {"email": "delivered", "sms": "delivered", "webhook": "delivered"})
    assert {r["correlation_id"] for r in rows.values()} == {event["correlation_id"]}

    [mail] = sent_to(sendgrid, "email", user["email"])
    assert mail["message_id"] == rows["email"]["provider_message_id"]
    assert "MARGIN_CALL" in mail["mail"]["content"][0]["value"]
    assert mail["mail"]["custom_args"]["delivery_id"] == str(rows["email"]["id"])
    [sms] = sent_to(twilio, "sms", user["phone"])
    assert sms["sid"] == rows["sms"]["provider_message_id"] and sms["form"]["From"] == "+15005550006"

    [hook] = receiver.received
    headers, body = hook["headers"], hook["body"]
    # Standard Webhooks, verified here independently: HMAC-SHA256 over "id.timestamp.body" with the
    # base64-decoded secret, the user's secret being derived from the platform key.
    secret = base64.b64encode(hmac.new(SIGNING_KEY.encode(), f"webhook:{user['user_id']}".encode(),
                                       hashlib.sha256).digest())
    expected = base64.b64encode(hmac.new(base64.b64decode(secret),
                                         f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body,
                                         hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert json.loads(body)["data"]["tier"] == "MARGIN_CALL"

    # The same event again: nothing is sent twice.
    bus.publish("risk.margin-events.v1", json.dumps(event).encode())
    wait_for(lambda: _inbox_outcomes(owner_engine, event["event_id"]) >= 1, "the redelivery to be seen")
    time.sleep(2)  # let a (wrong) second send land if there were one
    assert len(sent_to(sendgrid, "email", user["email"])) == 1
    assert len(sent_to(twilio, "sms", user["phone"])) == 1
    assert len(receiver.received) == 1


def _inbox_outcomes(engine, event_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT count(*) FROM notify.inbox WHERE event_id = :e"),
                            {"e": event_id}).scalar()


def test_sendgrid_failing_twice_is_retried_and_other_channels_are_not_held_up(stack, bus, owner_engine, receiver,
                                                                              vendors):
    sendgrid, _ = vendors
    wallet = _wallet()
    user = _register(bus, owner_engine, wallet, receiver.url)
    sendgrid.fail_next(500, 2, matching=user["email"])
    event = _margin_call(wallet)
    bus.publish("risk.margin-events.v1", json.dumps(event).encode())
    rows = final(owner_engine, event["event_id"], {"email": "delivered", "sms": "delivered", "webhook": "delivered"})
    assert [a.outcome for a in attempts(owner_engine, rows["email"]["id"])] == ["transient", "transient", "sent"]
    assert [a.outcome for a in attempts(owner_engine, rows["sms"]["id"])] == ["sent"]
    assert len(sent_to(sendgrid, "email", user["email"])) == 1


def test_an_invalid_phone_number_fails_the_sms_only(stack, bus, owner_engine, receiver, vendors):
    wallet = _wallet()
    _register(bus, owner_engine, wallet, receiver.url, phone="+15005550001")
    event = _margin_call(wallet)
    bus.publish("risk.margin-events.v1", json.dumps(event).encode())
    rows = settled(owner_engine, event["event_id"], 3)
    assert rows["sms"]["status"] == "failed" and "21211" in rows["sms"]["reason"]
    assert [a.outcome for a in attempts(owner_engine, rows["sms"]["id"])] == ["permanent"]
    assert rows["webhook"]["status"] == "delivered"
    assert final(owner_engine, event["event_id"], {"email": "delivered", "sms": "failed", "webhook": "delivered"})


def test_webhook_5xx_is_retried_and_410_disables_the_endpoint(stack, bus, owner_engine):
    flaky, gone = WebhookReceiver(answers=[503, 429]), WebhookReceiver(answers=[410])
    try:
        first, second = _wallet(), _wallet()
        _register(bus, owner_engine, first, flaky.url, channels=("webhook",))
        user = _register(bus, owner_engine, second, gone.url, channels=("webhook",))
        retried, disabled = _margin_call(first), _margin_call(second)
        for event in (retried, disabled):
            bus.publish("risk.margin-events.v1", json.dumps(event).encode())
        ok = settled(owner_engine, retried["event_id"], 1)["webhook"]
        assert ok["status"] == "delivered"
        assert [a.status_code for a in attempts(owner_engine, ok["id"])] == [503, 429, 200]
        assert len({r["headers"]["webhook-id"] for r in flaky.received}) == 1  # one id across retries
        failed = settled(owner_engine, disabled["event_id"], 1)["webhook"]
        assert failed["status"] == "failed" and "410" in failed["reason"]
        with owner_engine.connect() as conn:
            enabled = conn.execute(sqlalchemy.text("SELECT webhook_enabled FROM notify.contacts WHERE user_id = :u"),
                                   {"u": user["user_id"]}).scalar()
        assert enabled is False
        later = _margin_call(second)
        bus.publish("risk.margin-events.v1", json.dumps(later).encode())
        assert settled(owner_engine, later["event_id"], 1)["webhook"]["reason"].startswith("endpoint disabled")
        assert len(gone.received) == 1
    finally:
        flaky.close()
        gone.close()


def test_delivery_callbacks_are_verified_applied_once_and_shown_in_the_history(stack, bus, owner_engine):
    wallet = _wallet()
    user = _register(bus, owner_engine, wallet, None, phone="+14155550009", channels=("email", "sms"))
    user_email_bounces = user["email"].replace("@example.org", "@bounce.test")
    # Re-register with an address the local SendGrid bounces (a contact update, same user id).
    bus.publish("users.registered.v1", json.dumps(_envelope("UserRegistered", {
        **user, "email": user_email_bounces, "webhook_url": None})).encode())
    wait_for(lambda: contact_email(owner_engine, user["user_id"]) == user_email_bounces, "the contact update")
    event = _margin_call(wallet)
    bus.publish("risk.margin-events.v1", json.dumps(event).encode())
    rows = final(owner_engine, event["event_id"], {"email": "bounced", "sms": "undelivered"})

    callbacks = stack.callbacks_url()
    # A forged SendGrid event (wrong key) and a forged Twilio status are refused and change nothing.
    forged = json.dumps([{"event": "delivered", "sg_event_id": "forged", "delivery_id": str(rows["email"]["id"]),
                          "sg_message_id": rows["email"]["provider_message_id"]}])
    reply = requests.post(f"{callbacks}/sendgrid/events", data=forged, timeout=10, headers={
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(b"not a signature").decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time()))})
    assert reply.status_code == 403
    reply = requests.post(f"{callbacks}/twilio/status", timeout=10, data={
        "MessageSid": rows["sms"]["provider_message_id"], "MessageStatus": "delivered"},
        headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})
    assert reply.status_code == 403
    # A genuine callback sent twice (as providers do) is applied once.
    with owner_engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text(
            "SELECT body FROM notify.provider_events WHERE provider = 'sendgrid' AND delivery_id = :d "
            "AND event = 'bounce'"), {"d": rows["email"]["id"]}).scalar_one()
    body = json.dumps([stored])
    timestamp = str(int(time.time()))
    key = serialization.load_pem_private_key(stack._sendgrid_event_key().read_bytes(), None)
    signature = base64.b64encode(key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    replayed = requests.post(f"{callbacks}/sendgrid/events", data=body, timeout=10, headers={
        "X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": timestamp})
    assert replayed.status_code == 200 and replayed.json()["outcomes"] == ["duplicate"]
    assert {c: r["status"] for c, r in deliveries(owner_engine, event["event_id"]).items()} == {
        "email": "bounced", "sms": "undelivered"}

    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    missing = requests.get(f"{api}/users/{user['user_id']}/notifications", timeout=10)
    assert missing.status_code == 404  # registered straight on the topic: notify knows the user, identity not
    registered = requests.post(f"{api}/users", timeout=10, json={
        "name": "History Test", "date_of_birth": "1980-01-01", "country": "US",
        "email": f"history-{uuid.uuid4().hex[:8]}@example.org", "phone": "+14155550100",
        "wallet_addresses": [_wallet()], "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": "US7654321", "issuing_country": "US",
                              "expires_on": "2031-01-31"}}).json()
    wait_for(lambda: contact_email(owner_engine, registered["user_id"]), "notify to learn the registered user")
    later = _margin_call(registered["wallet_addresses"][0])
    bus.publish("risk.margin-events.v1", json.dumps(later).encode())
    final(owner_engine, later["event_id"], {"email": "delivered"})
    history = requests.get(f"{api}/users/{registered['user_id']}/notifications", timeout=10)
    assert_matches("/users/{user_id}/notifications", "get", history)
    [entry] = history.json()["notifications"]
    assert (entry["event_id"], entry["channel"], entry["status"]) == (later["event_id"], "email", "delivered")
    assert [a["outcome"] for a in entry["attempt_log"]] == ["sent"]


