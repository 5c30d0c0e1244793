"""The critical flow, chain to alert, in one test per variant, every hop a push subscription into a
running function:

    register (api) -> escrow on anvil -> relay -> settle -> assess-margin
    -> Chainlink and CoinGecko crash -> fetch-price -> assess-margin (margin call) -> notify
    -> local SendGrid, local Twilio, a signed webhook -> delivery callbacks -> delivered

Checked: the rows at every stage (PostgreSQL), the messages at every hop (pulled), one correlation id
from the chain log to the delivery rows, and in every variant nothing lost and nothing sent twice.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
import sqlalchemy

from shared.ops.trace import escrow_trace, format_trace
from shared.stack.chain_driver import approve, complete, create_escrow, mine, new_funded_account, wait_for
from shared.stack.vendor_server import VendorControl
from tests.support.notify import contact_email, deliveries, final, sent_to
from tests.support.risk import margin_events, position, wait_position
from tests.support.webhooks import WebhookReceiver

ETH, USD = 10**18, 10**8
HOPS = ("users.registered.v1", "settlement.events.v1", "settlement.escrows.v1", "market.prices.v1",
        "risk.margin-events.v1")
VARIANTS = {
    # variant: (sms phone, webhook answers, SendGrid failures, expected final statuses)
    "clean": ("+14155550100", [], 0, {"email": "delivered", "sms": "delivered", "webhook": "delivered"}),
    "sendgrid_500_twice": ("+14155550100", [], 2, {"email": "delivered", "sms": "delivered", "webhook": "delivered"}),
    "invalid_phone": ("+15005550001", [], 0, {"email": "delivered", "sms": "failed", "webhook": "delivered"}),
    "webhook_410": ("+14155550100", [410], 0, {"email": "delivered", "sms": "delivered", "webhook": "failed"}),
    "every_message_twice": ("+14155550100", [], 0,
                            {"email": "delivered", "sms": "delivered", "webhook": "delivered"}),
}


def _row(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql), params).mappings().first()


def _ours(messages, predicate) -> list:
    return [m for m in messages if predicate(json.loads(m.data))]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chain_to_alert(variant, stack, bus, owner_engine, market, isolated_relay):
    phone, webhook_answers, sendgrid_failures, expected = VARIANTS[variant]
    twice = variant == "every_message_twice"
    receiver = WebhookReceiver(answers=webhook_answers)
    sendgrid, twilio = VendorControl(stack.layout.sendgrid_url), VendorControl(stack.layout.twilio_url)
    subscriptions = {topic: bus.pull_subscription(topic) for topic in HOPS}
    relay = isolated_relay()
    w3 = stack.web3()
    depositor = new_funded_account(w3)
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    try:
        # 1. A user registers with email, SMS and a webhook.
        reply = requests.post(f"{api}/users", timeout=10, json={
            "name": "Critical Flow", "date_of_birth": "1985-06-15", "country": "US",
            "email": f"flow-{uuid.uuid4().hex[:8]}@example.org", "phone": "+14155550100",
            "wallet_addresses": [depositor], "notification_channels": ["email", "sms", "webhook"],
            "webhook_url": receiver.url,
            "identity_document": {"type": "driving_licence", "number": "D1234-5678", "issuing_country": "US",
                                  "expires_on": "2030-06-30"}})
        assert reply.status_code == 201, reply.text
        user = reply.json()
        [registered] = _ours(bus.pull(subscriptions["users.registered.v1"], until=lambda ms: _ours(
            ms, lambda e: e["payload"]["user_id"] == user["user_id"]), timeout=20),
            lambda e: e["payload"]["user_id"] == user["user_id"])
        wait_for(lambda: contact_email(owner_engine, user["user_id"]), "notify to project the contact")
        if phone != "+14155550100":  # a well-formed number the provider refuses (Twilio's magic invalid number)
            bus.publish("users.registered.v1", _with_phone(registered, phone))
            wait_for(lambda: _row(owner_engine, "SELECT phone FROM notify.contacts WHERE user_id = :u",
                                  u=user["user_id"])["phone"] == phone, "the contact's new phone")

        # 2-3. An escrow on anvil; relay, settle and assess-margin take it (1 ETH against 1000 USD at
        # 2000 USD/ETH: health factor 1.65, HEALTHY).
        escrow = create_escrow(w3, relay.contract, depositor, w3.eth.accounts[2], ETH, 1000 * USD)
        mine(w3, 2)
        relay.wait_caught_up(owner_engine)
        contract = relay.contract.address
        projected = wait_position(owner_engine, contract, escrow.escrow_id, "created")
        settled = _row(owner_engine, "SELECT * FROM settlement.escrows WHERE contract = :c AND escrow_id = :i",
                       c=contract, i=escrow.escrow_id)
        correlation = settled["created_event_id"]  # the chain log's id: chain_id:tx_hash:log_index
        assert correlation.startswith(f"31337:{escrow.tx_hash}:")
        relayed = _row(owner_engine, "SELECT * FROM relay.relayed_logs WHERE event_id = :e", e=correlation)
        assert relayed is not None
        assert projected.correlation_id == correlation and projected.tier is None

        def about_escrow(e):
            return e["payload"].get("contract") == contract and str(e["payload"].get("escrow_id")) == str(
                escrow.escrow_id)

        [log_event] = _ours(bus.pull(subscriptions["settlement.events.v1"], until=lambda ms: _ours(ms, about_escrow),
                                     timeout=20), about_escrow)
        [change] = _ours(bus.pull(subscriptions["settlement.escrows.v1"], until=lambda ms: _ours(ms, about_escrow),
                                  timeout=20), about_escrow)
        assert json.loads(log_event.data)["correlation_id"] == correlation
        assert json.loads(change.data)["correlation_id"] == correlation
        if twice:
            bus.publish("settlement.events.v1", log_event.data, **dict(log_event.attributes))
            bus.publish("settlement.escrows.v1", change.data, **dict(change.attributes))

        # 4-5. The price crashes on both sources; fetch-price, then assess-margin emits a margin call.
        if sendgrid_failures:
            sendgrid.fail_next(500, sendgrid_failures, matching=user["email"])
        crash_started = time.time()
        market.quote("1400", chainlink="1401")
        decision = market.tick()
        assert decision.status == "accepted" and decision.published_event_id
        [price] = _ours(bus.pull(subscriptions["market.prices.v1"], until=bool, timeout=20),
                        lambda e: e["event_id"] == decision.published_event_id)
        [margin] = wait_for(lambda: margin_events(owner_engine, contract, escrow.escrow_id), "the margin call")
        assert (margin.previous_tier, margin.tier, margin.correlation_id) == ("HEALTHY", "MARGIN_CALL", correlation)
        [margin_message] = _ours(bus.pull(subscriptions["risk.margin-events.v1"], until=lambda ms: _ours(
            ms, about_escrow), timeout=20), about_escrow)
        margin_event = json.loads(margin_message.data)
        assert margin_event["correlation_id"] == correlation
        assert margin_event["causation_id"] == decision.published_event_id
        if twice:
            bus.publish("market.prices.v1", price.data, **dict(price.attributes))
            bus.publish("risk.margin-events.v1", margin_message.data, **dict(margin_message.attributes))

        # 6-7. notify sends; the vendors' callbacks (and the webhook's 2xx) mark the deliveries.
        rows = final(owner_engine, margin_event["event_id"], expected)
        assert {r["correlation_id"] for r in rows.values()} == {correlation}
        time.sleep(2 if twice else 0.5)  # room for a (wrong) second send to arrive

        # Nothing lost, nothing sent twice.
        assert len(margin_events(owner_engine, contract, escrow.escrow_id)) == 1
        assert len(deliveries(owner_engine, margin_event["event_id"])) == 3
        assert len(sent_to(sendgrid, "email", user["email"])) == 1
        # Every user here has the same test phone number: count the SMS about this escrow's contract.
        ours = [m for m in sent_to(twilio, "sms", phone) if contract in m["form"]["Body"]]
        assert len(ours) == (0 if variant == "invalid_phone" else 1)
        assert len(receiver.received) == 1
        if variant != "webhook_410":
            assert json.loads(receiver.received[0]["body"])["data"]["escrow_id"] == str(escrow.escrow_id)
        assert position(owner_engine, contract, escrow.escrow_id).tier == "MARGIN_CALL"
        print(f"{variant}: crash to final delivery statuses in {time.time() - crash_started:.1f}s")
        if variant == "clean":
            _check_trace(owner_engine, contract, escrow.escrow_id)

        # Close the escrow, so the next tests' price moves do not alert this test's (closed) endpoint.
        approve(w3, relay.contract, escrow)
        complete(w3, relay.contract, escrow)
        mine(w3, 2)
        relay.wait_caught_up(owner_engine)
        wait_position(owner_engine, contract, escrow.escrow_id, "completed")
    finally:
        receiver.close()


def _check_trace(engine, contract: str, escrow_id: int) -> None:
    """The trace CLI's view of the escrow: every stage, in time order, chain first."""
    with engine.connect() as conn:
        stages = escrow_trace(conn, 31337, contract, escrow_id)
    names = [s.stage for s in stages]
    assert names[0] == "chain"
    for expected in ("relay", "settle received", "settle applied", "assess-margin received", "fetch-price decided",
                     "assess-margin", "notify received", "notify email", "sendgrid callback", "notify sms",
                     "twilio callback", "notify webhook", "email final"):
        assert expected in names, (expected, names)
    assert names.index("settle applied") < names.index("assess-margin") < names.index("notify email")
    assert [s.at for s in stages] == sorted(s.at for s in stages)
    assert "ms" in format_trace(stages)


def _with_phone(registered_message, phone: str) -> bytes:
    """The same registration under a new event id, with `phone` (a contact update, as re-registration)."""
    document = json.loads(registered_message.data)
    document["event_id"] = f"UserRegistered:{uuid.uuid4().hex}"
    document["payload"]["phone"] = phone
    return json.dumps(document).encode()
