"""One escrow, one correlation id, from its creation log to its last delivery; and what a reorganisation
does to an escrow that was alerted on: its alerts are withdrawn, and an id reused after it starts fresh."""

from __future__ import annotations

import json
import uuid

import requests
import sqlalchemy

from shared.ops.trace import escrow_trace
from shared.stack.chain_driver import approve, complete, create_escrow, mine, new_funded_account, reorg, wait_for
from shared.stack.stack import CONFIRMATIONS
from shared.stack.vendor_server import VendorControl
from tests.support.notify import sent_to
from tests.support.webhooks import WebhookReceiver

ETH, USD = 10**18, 10**8
# 1 ETH against 1500 USD at 2000 USD/ETH: health factor 1.1, a margin call as soon as it is created.
MARGIN_CALL_OBLIGATION = 1500 * USD


def _rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sqlalchemy.text(sql), params).mappings())


def _register(stack, wallet: str, webhook_url: str) -> dict:
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    reply = requests.post(f"{api}/users", timeout=10, json={
        "name": "Reorg Watcher", "date_of_birth": "1980-01-01", "country": "US",
        "email": f"reorg-{uuid.uuid4().hex[:8]}@example.org", "phone": "+14155550100",
        "wallet_addresses": [wallet], "notification_channels": ["email", "webhook"], "webhook_url": webhook_url,
        "identity_document": {"type": "passport", "number": "P0000002", "issuing_country": "US",
                              "expires_on": "2031-01-01"}})
    assert reply.status_code == 201, reply.text
    return reply.json()


def _wait_contact(engine, user_id: str) -> None:
    wait_for(lambda: _rows(engine, "SELECT 1 FROM notify.contacts WHERE user_id = :u", u=user_id),
             "notify to project the contact")


def _deliveries(engine, correlation: str, event_type: str) -> dict:
    rows = _rows(engine, "SELECT * FROM notify.deliveries WHERE correlation_id = :k AND event_type = :t",
                 k=correlation, t=event_type)
    return {row["channel"]: row for row in rows}


def _all_delivered(engine, correlation: str, event_type: str, channels: set[str]):
    rows = _deliveries(engine, correlation, event_type)
    done = set(rows) == channels and all(r["status"] == "delivered" for r in rows.values())
    return rows if done else None


def test_every_event_of_an_escrow_carries_its_creation_logs_correlation_id(
        stack, bus, owner_engine, market, isolated_relay):
    relay = isolated_relay()
    receiver = WebhookReceiver()
    w3 = stack.web3()
    depositor = new_funded_account(w3)
    user = _register(stack, depositor, receiver.url)
    _wait_contact(owner_engine, user["user_id"])
    try:
        escrow = create_escrow(w3, relay.contract, depositor, w3.eth.accounts[2], ETH, MARGIN_CALL_OBLIGATION)
        mine(w3, CONFIRMATIONS)
        relay.wait_caught_up(owner_engine)
        correlation = f"31337:{escrow.tx_hash}:0"
        wait_for(lambda: _all_delivered(owner_engine, correlation, "MarginTierChanged", {"email", "webhook"}),
                 "the margin call delivered")
        approve(w3, relay.contract, escrow)
        complete(w3, relay.contract, escrow)
        mine(w3, CONFIRMATIONS)
        relay.wait_caught_up(owner_engine)
        contract = relay.contract.address
        wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM risk.positions WHERE contract = :c AND state = "
                                             "'completed'", c=contract), "the completion in risk")
    finally:
        receiver.close()

    logs = _rows(owner_engine, "SELECT envelope FROM relay.outbox WHERE envelope->'payload'->>'contract' = :c "
                               "ORDER BY id", c=contract)
    assert [row["envelope"]["event_type"] for row in logs] == ["EscrowCreated", "EscrowApproved", "EscrowCompleted"]
    assert {row["envelope"]["correlation_id"] for row in logs} == {correlation}
    changes = _rows(owner_engine, "SELECT envelope FROM settlement.outbox WHERE envelope->'payload'->>'contract' = :c",
                    c=contract)
    assert len(changes) == 3
    assert {row["envelope"]["correlation_id"] for row in changes} == {correlation}
    # Each state change is caused by its own chain log.
    assert sorted(row["envelope"]["causation_id"] for row in changes) == sorted(
        row["envelope"]["event_id"] for row in logs)
    margin = _rows(owner_engine, "SELECT correlation_id FROM risk.margin_events WHERE contract = :c", c=contract)
    assert [row["correlation_id"] for row in margin] == [correlation]
    assert {row["correlation_id"] for row in _rows(
        owner_engine, "SELECT correlation_id FROM notify.deliveries WHERE payload->'payload'->>'contract' = :c",
        c=contract)} == {correlation}

    with owner_engine.connect() as conn:
        stages = escrow_trace(conn, 31337, contract, escrow.escrow_id)
    details = [f"{s.stage}: {s.detail}" for s in stages]
    for event_type in ("EscrowCreated", "EscrowApproved", "EscrowCompleted"):
        assert any(d.startswith("relay: relayed " + event_type) for d in details), (event_type, details)
        assert any(d.startswith("settle received: " + event_type) for d in details), (event_type, details)
    assert sum(1 for s in stages if s.stage == "settle applied") == 3
    assert {"notify email", "notify webhook", "email final", "webhook final"} <= {s.stage for s in stages}


def test_a_voided_escrow_is_retracted_on_every_alerted_channel_and_its_reused_id_starts_fresh(
        stack, bus, owner_engine, market, isolated_relay):
    relay = isolated_relay()
    receiver = WebhookReceiver()
    sendgrid = VendorControl(stack.layout.sendgrid_url)
    w3 = stack.web3()
    contract = relay.contract
    depositor = new_funded_account(w3)
    user = _register(stack, depositor, receiver.url)
    _wait_contact(owner_engine, user["user_id"])
    try:
        relay.wait_caught_up(owner_engine)
        voided = create_escrow(w3, contract, depositor, w3.eth.accounts[2], ETH, MARGIN_CALL_OBLIGATION)
        mine(w3, CONFIRMATIONS)
        relay.wait_caught_up(owner_engine)
        old_correlation = f"31337:{voided.tx_hash}:0"
        alerts = wait_for(lambda: _all_delivered(owner_engine, old_correlation, "MarginTierChanged",
                                                 {"email", "webhook"}), "the margin call delivered")

        # A reorganisation deeper than the confirmations erases the escrow; in its place another depositor
        # creates an escrow that gets the same id, also at a margin call.
        other = w3.eth.accounts[5]
        deadline = w3.eth.get_block("latest")["timestamp"] + 86400
        replacement = contract.functions.create(w3.eth.accounts[6], MARGIN_CALL_OBLIGATION, deadline).build_transaction(
            {"from": other, "value": ETH, "gas": 300_000})
        reorg(w3, w3.eth.block_number - voided.block_number + 1,
              [({k: replacement[k] for k in ("from", "to", "value", "data", "gas")}, 0)])
        mine(w3, CONFIRMATIONS + 1)
        relay.wait_caught_up(owner_engine)

        key = {"c": contract.address, "i": voided.escrow_id}
        [settled] = wait_for(lambda: [r for r in _rows(
            owner_engine, "SELECT * FROM settlement.escrows WHERE contract = :c AND escrow_id = :i", **key)
            if r["depositor"] == other and r["state"] == "created"], "the reused id settled")
        new_correlation = settled["created_event_id"]
        assert new_correlation != old_correlation
        corrections = wait_for(lambda: _all_delivered(owner_engine, old_correlation, "MarginAlertRetracted",
                                                      {"email", "webhook"}), "one correction per alerted channel")
        [position] = wait_for(lambda: [r for r in _rows(
            owner_engine, "SELECT * FROM risk.positions WHERE contract = :c AND escrow_id = :i", **key)
            if r["correlation_id"] == new_correlation and r["tier"] == "MARGIN_CALL"], "the reused id assessed afresh")
        assert position["depositor"] == other and position["is_open"]
    finally:
        receiver.close()

    # The reused id has its own margin event, under its own correlation id; the voided one kept its own.
    margin = _rows(owner_engine, "SELECT correlation_id, tier, depositor FROM risk.margin_events "
                                 "WHERE contract = :c AND escrow_id = :i ORDER BY occurred_at", **key)
    assert [(m["correlation_id"], m["tier"]) for m in margin] == [
        (old_correlation, "MARGIN_CALL"), (new_correlation, "MARGIN_CALL")]
    # Each correction went where its alert went, once.
    assert {c: r["recipient"] for c, r in corrections.items()} == {c: r["recipient"] for c, r in alerts.items()}
    assert len(sent_to(sendgrid, "email", user["email"])) == 2
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert [b["type"] for b in bodies] == ["margin.tier_changed", "margin.alert_retracted"]
    assert bodies[1]["data"]["escrow_id"] == str(voided.escrow_id)
    # The new escrow's depositor is not a registered user: its alert is kept as unrouted, not sent to ours.
    assert not _deliveries(owner_engine, new_correlation, "MarginTierChanged")
