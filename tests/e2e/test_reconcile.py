"""The reconciler on the stack: each kind of drift injected by hand, found, recorded and repaired; dead
letters redriven home once; poison held with its reason.

Each test runs a reconcile instance of its own for its own escrow contract (like the isolated relays),
ticked by the test, and looks only at its own keys: other tests leave their own history in the database.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy

from shared.envelope import Envelope
from shared.stack.chain_driver import create_escrow, mine, new_funded_account, wait_for
from shared.stack.processes import stop_group
from shared.stack.stack import CONFIRMATIONS
from tests.support.compliance import (
    close_variant_of_a_listed_individual,
    compliance,
    real_lists,
    register,
    registration,
    wait_decision,
)
from tests.support.events import body, unique_escrow_created
from tests.support.relay import free_port
from tests.support.reviewers import ANALYST, as_caller
from tests.support.rpc_proxy import LimitingRpcProxy

ETH, USD = 10**18, 10**8
HEALTHY_OBLIGATION = 1000 * USD
MARGIN_CALL_OBLIGATION = 1500 * USD
# The stack runs the reconciler with RECONCILE_GRACE_SECONDS=5.
PAST_GRACE_SECONDS = 6


def _rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sqlalchemy.text(sql), params).mappings())


def _execute(engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(sql), params)


@dataclass
class OwnReconciler:
    """A reconcile instance for one contract, on a tick topic of its own."""

    stack: object
    bus: object
    engine: object
    tick_topic: str
    pid: int

    def run(self, timeout: float = 60.0) -> dict:
        """Tick it once and return the run it recorded."""
        [before] = _rows(self.engine, "SELECT coalesce(max(id), 0) AS id FROM ops.runs")
        self.bus.publish(self.tick_topic, json.dumps({"source": "test"}).encode())
        [run] = wait_for(lambda: _rows(self.engine, "SELECT * FROM ops.runs WHERE id > :b ORDER BY id LIMIT 1",
                                       b=before["id"]), "a reconcile run", timeout=timeout)
        return run

    def drifts(self, key_part: str) -> dict:
        """(kind, key) -> drift row, for keys containing `key_part`."""
        rows = _rows(self.engine, "SELECT * FROM ops.drifts WHERE key LIKE :k ORDER BY id", k=f"%{key_part}%")
        return {(row["kind"], row["key"]): row for row in rows}


@pytest.fixture
def own_reconciler(stack, bus, owner_engine):
    started = []

    def start(contract_address: str) -> OwnReconciler:
        tick_topic = f"test-reconcile-{uuid.uuid4().hex[:10]}"
        bus.create_topic(tick_topic)
        bus.create_topic(tick_topic + ".dlq")
        port = free_port()
        pid = stack.start_function(stack.topology.function("reconcile"), None, contract_address, port=port,
                                   instance=f"reconcile-{tick_topic}")
        bus.push_subscription(tick_topic, f"http://127.0.0.1:{port}/", tick_topic + ".dlq", max_attempts=5)
        started.append(pid)
        return OwnReconciler(stack, bus, owner_engine, tick_topic, pid)

    yield start
    for pid in started:
        stop_group(pid)


def _settled_escrow(stack, owner_engine, relay, obligation: int, depositor: str | None = None):
    w3 = stack.web3()
    escrow = create_escrow(w3, relay.contract, depositor or w3.eth.accounts[1], w3.eth.accounts[2], ETH, obligation)
    mine(w3, CONFIRMATIONS)
    relay.wait_caught_up(owner_engine)
    key = {"c": relay.contract.address, "i": escrow.escrow_id}
    wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM risk.positions WHERE contract = :c AND escrow_id = :i", **key),
             "the escrow in risk")
    time.sleep(PAST_GRACE_SECONDS)  # younger changes may still be in flight: the reconciler leaves them alone
    return escrow, key


def test_a_deleted_settlement_row_is_found_and_restored_from_relays_events(
        stack, bus, owner_engine, isolated_relay, own_reconciler):
    relay = isolated_relay()
    escrow, key = _settled_escrow(stack, owner_engine, relay, HEALTHY_OBLIGATION)
    [original] = _rows(owner_engine, "SELECT * FROM settlement.escrows WHERE contract = :c AND escrow_id = :i", **key)
    reconciler = own_reconciler(relay.contract.address)
    first = reconciler.run()
    assert not reconciler.drifts(relay.contract.address), "a clean contract reports no drift"
    assert first["checked"]["chain escrows"] >= 1

    _execute(owner_engine, "DELETE FROM settlement.escrows WHERE contract = :c AND escrow_id = :i", **key)
    # Retention has also pruned settle's published state change: the replay stages it again, and it goes
    # out at once (not after its publishing lease).
    [change] = _rows(owner_engine, "SELECT event_id FROM settlement.outbox WHERE envelope->'payload'->>'contract' = :c "
                                   "AND envelope->'payload'->>'escrow_id' = CAST(:i AS text)", **key)
    _execute(owner_engine, "DELETE FROM settlement.outbox WHERE event_id = :e", e=change["event_id"])
    reconciler.run()
    drift_key = f"31337:{relay.contract.address}:{escrow.escrow_id}"
    drift = reconciler.drifts(relay.contract.address)[("settlement_missing", drift_key)]
    assert drift["source"]["state"] == "created" and drift["replica"] is None
    assert drift["repair"].startswith("replayed 1 chain logs")
    [restored] = wait_for(lambda: _rows(owner_engine, "SELECT * FROM settlement.escrows WHERE contract = :c "
                                                      "AND escrow_id = :i", **key), "the escrow restored")
    assert (restored["state"], restored["created_event_id"], restored["sequence"]) == (
        original["state"], original["created_event_id"], original["sequence"])
    wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM settlement.outbox WHERE event_id = :e "
                                         "AND published_at IS NOT NULL", e=change["event_id"]),
             "the state change published again", timeout=15)
    # Nothing doubled downstream: still one transition and one state change.
    assert len(_rows(owner_engine, "SELECT 1 FROM settlement.transitions WHERE contract = :c AND escrow_id = :i",
                     **key)) == 1
    reconciler.run()
    assert reconciler.drifts(relay.contract.address)[("settlement_missing", drift_key)]["resolved_at"] is not None


def test_an_altered_risk_row_is_found_and_restored_from_settles_events(
        stack, bus, owner_engine, isolated_relay, own_reconciler):
    relay = isolated_relay()
    escrow, key = _settled_escrow(stack, owner_engine, relay, HEALTHY_OBLIGATION)
    [before] = _rows(owner_engine, "SELECT * FROM risk.positions WHERE contract = :c AND escrow_id = :i", **key)
    _execute(owner_engine, "UPDATE risk.positions SET collateral_amount = collateral_amount * 2, "
                           "obligation_usd = 1 WHERE contract = :c AND escrow_id = :i", **key)
    reconciler = own_reconciler(relay.contract.address)
    reconciler.run()
    drift_key = f"31337:{relay.contract.address}:{escrow.escrow_id}"
    drift = reconciler.drifts(relay.contract.address)[("risk_differs", drift_key)]
    assert drift["source"]["amount"] == str(ETH) and drift["replica"]["amount"] == str(2 * ETH)
    assert drift["repair"].startswith("replayed settle's state change")
    wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM risk.positions WHERE contract = :c AND escrow_id = :i "
                                         "AND collateral_amount = :a AND obligation_usd = :o", **key,
                           a=before["collateral_amount"], o=before["obligation_usd"]), "the position restored")
    reconciler.run()
    assert reconciler.drifts(relay.contract.address)[("risk_differs", drift_key)]["resolved_at"] is not None


def test_an_outbox_row_left_unpublished_is_published_with_its_id(
        stack, bus, owner_engine, isolated_relay, own_reconciler):
    relay = isolated_relay()
    escrow, key = _settled_escrow(stack, owner_engine, relay, HEALTHY_OBLIGATION)
    changes = bus.pull_subscription("settlement.escrows.v1")
    [row] = _rows(owner_engine, "SELECT id, event_id FROM settlement.outbox WHERE envelope->'payload'->>'contract' = "
                                ":c AND envelope->'payload'->>'escrow_id' = :i", c=key["c"], i=str(key["i"]))
    # As if settle had crashed between its commit and its publish, and no event came after.
    _execute(owner_engine, "UPDATE settlement.outbox SET published_at = NULL, message_id = NULL WHERE id = :id",
             id=row["id"])
    reconciler = own_reconciler(relay.contract.address)
    reconciler.run()
    drift = reconciler.drifts("settlement.outbox")[("outbox_unpublished", "settlement.outbox")]
    assert drift["repair"].startswith("published")
    assert _rows(owner_engine, "SELECT published_at FROM settlement.outbox WHERE id = :id", id=row["id"])[0][
        "published_at"] is not None
    republished = bus.pull(changes, until=lambda ms: any(json.loads(m.data)["event_id"] == row["event_id"] for m in ms))
    assert [json.loads(m.data)["event_id"] for m in republished].count(row["event_id"]) == 1
    assert len(_rows(owner_engine, "SELECT 1 FROM risk.inbox WHERE event_id = :e", e=row["event_id"])) == 1


def test_a_margin_event_left_unpublished_is_published_with_its_id(
        stack, bus, owner_engine, market, isolated_relay, own_reconciler):
    relay = isolated_relay()
    escrow, key = _settled_escrow(stack, owner_engine, relay, MARGIN_CALL_OBLIGATION)
    [margin] = wait_for(lambda: _rows(owner_engine, "SELECT event_id, message_id FROM risk.margin_events WHERE "
                                                    "contract = :c AND escrow_id = :i AND published_at IS NOT NULL",
                                      **key), "the margin event published")
    alerts = bus.pull_subscription("risk.margin-events.v1")
    # As if assess-margin had crashed between its commit and its publish, and no event came after (its
    # deliveries are held meanwhile: any delivery would publish what is pending).
    admin = stack.admin
    held = {name: admin.subscription_body(stack.topology.subscription(name), stack.push_endpoints())["pushConfig"]
            for name in ("settlement.escrows.v1.assess-margin", "market.prices.v1.assess-margin")}
    for name in held:
        _modify_push_config(admin, name, {})
    try:
        _execute(owner_engine, "UPDATE risk.margin_events SET published_at = NULL, message_id = NULL "
                               "WHERE event_id = :e", e=margin["event_id"])
        reconciler = own_reconciler(relay.contract.address)
        reconciler.run()
    finally:
        for name, push in held.items():
            _modify_push_config(admin, name, push)
    drift = reconciler.drifts("risk.margin_events")[("outbox_unpublished", "risk.margin_events")]
    assert drift["repair"].startswith("published") and drift["source"]["unpublished"] >= 1
    [marked] = _rows(owner_engine, "SELECT published_at, message_id FROM risk.margin_events WHERE event_id = :e",
                     e=margin["event_id"])
    assert marked["published_at"] is not None and marked["message_id"] not in (None, margin["message_id"])
    republished = bus.pull(alerts, until=lambda ms: any(json.loads(m.data)["event_id"] == margin["event_id"]
                                                        for m in ms), settle=1.0)
    assert [json.loads(m.data)["event_id"] for m in republished].count(margin["event_id"]) == 1
    # notify had it already: the second copy is a duplicate, not a second alert.
    assert len(_rows(owner_engine, "SELECT 1 FROM notify.inbox WHERE event_id = :e", e=margin["event_id"])) == 1


def test_a_swallowed_margin_event_is_found_and_delivered(stack, bus, owner_engine, market, isolated_relay,
                                                         own_reconciler):
    relay = isolated_relay()
    w3 = stack.web3()
    depositor = new_funded_account(w3)
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    user_id = register(api, registration("Swallowed Alert", wallet_addresses=[depositor]))["user_id"]
    wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM notify.contacts WHERE user_id = :u", u=user_id),
             "the contact")
    admin = stack.admin
    subscription = "risk.margin-events.v1.notify"
    push = admin.subscription_body(stack.topology.subscription(subscription), stack.push_endpoints())["pushConfig"]
    # Someone pulls and acknowledges the margin event before notify sees it.
    _modify_push_config(admin, subscription, {})
    try:
        escrow, key = _settled_escrow(stack, owner_engine, relay, MARGIN_CALL_OBLIGATION, depositor)
        [margin] = wait_for(lambda: _rows(owner_engine, "SELECT event_id FROM risk.margin_events WHERE contract = :c "
                                                        "AND escrow_id = :i", **key), "the margin event")
        swallowed = _swallow(bus, subscription, margin["event_id"])
        assert swallowed
    finally:
        _modify_push_config(admin, subscription, push)
    assert not _rows(owner_engine, "SELECT 1 FROM notify.inbox WHERE event_id = :e", e=margin["event_id"])
    reconciler = own_reconciler(relay.contract.address)
    reconciler.run()
    drift = reconciler.drifts(margin["event_id"])[("notify_missing", margin["event_id"])]
    assert drift["repair"] == "republished from risk's margin events with its id"
    [delivery] = wait_for(lambda: _rows(owner_engine, "SELECT * FROM notify.deliveries WHERE event_id = :e "
                                                      "AND status IN ('sent', 'delivered')", e=margin["event_id"]),
                          "the margin call delivered")
    assert delivery["channel"] == "email"


def test_a_registration_lost_on_its_way_reaches_notify_compliance_and_settle(
        stack, bus, owner_engine, isolated_relay, own_reconciler):
    """Someone takes the UserRegistered off notify's and screen-compliance's subscriptions: no contact (the
    user's alerts would go unrouted), no screening. The reconciler replays identity's own event; then
    settle's copy of the decision, deleted, and then the wallet settle holds it over, deleted, are each
    replayed from compliance's result. Nothing doubles."""
    wallet = new_funded_account(stack.web3())
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    subscriptions = ["users.registered.v1.notify", "users.registered.v1.screen-compliance"]
    admin = stack.admin
    pushes = {name: admin.subscription_body(stack.topology.subscription(name), stack.push_endpoints())["pushConfig"]
              for name in subscriptions}
    for name in subscriptions:
        _modify_push_config(admin, name, {})
    try:
        user_id = register(api, registration("Lost Registration", wallet_addresses=[wallet]))["user_id"]
        for name in subscriptions:
            assert _swallow(bus, name, f"UserRegistered:{user_id}")
    finally:
        for name in subscriptions:
            _modify_push_config(admin, name, pushes[name])
    copies = {"contact": "SELECT 1 FROM notify.contacts WHERE user_id = :u",
              "wallet": "SELECT 1 FROM notify.contact_wallets WHERE user_id = :u AND wallet = lower(:w)",
              "subject": "SELECT 1 FROM compliance.subjects WHERE user_id = :u",
              "decision": "SELECT 1 FROM settlement.compliance_statuses WHERE user_id = :u"}
    assert not any(_rows(owner_engine, sql, u=user_id, w=wallet) for sql in copies.values())
    time.sleep(PAST_GRACE_SECONDS)

    reconciler = own_reconciler(isolated_relay().contract.address)
    reconciler.run()
    found = reconciler.drifts(user_id)
    assert found[("contact_missing", user_id)]["replica"] == {"contact": False, "unrouted_wallets": [wallet],
                                                              "registration_received": None, "reason": None}
    assert found[("contact_missing", user_id)]["repair"] == "replayed identity's UserRegistered with its id"
    assert found[("screening_missing", user_id)]["repair"].startswith("replayed identity's UserRegistered")
    for copy, sql in copies.items():
        wait_for(lambda sql=sql: _rows(owner_engine, sql, u=user_id, w=wallet), f"the user's {copy} restored")

    _execute(owner_engine, "DELETE FROM settlement.compliance_statuses WHERE user_id = :u", u=user_id)
    time.sleep(PAST_GRACE_SECONDS)  # the decision was made just now: the run leaves younger ones alone
    reconciler.run()
    drift = reconciler.drifts(user_id)[("compliance_status_missing", user_id)]
    assert drift["source"] == {"decision": "APPROVED", "sequence": 1} and drift["replica"] is None
    assert drift["repair"] == "replayed compliance's result at sequence 1 with its id"
    wait_for(lambda: _rows(owner_engine, copies["decision"], u=user_id), "settle's copy of the decision restored")

    # settle loses the wallet it holds the decision over: the user's escrows would go unheld.
    held_wallet = "SELECT 1 FROM settlement.compliance_wallets WHERE user_id = :u AND wallet = :w"
    _execute(owner_engine, "DELETE FROM settlement.compliance_wallets WHERE user_id = :u", u=user_id)
    reconciler.run()
    drift = reconciler.drifts(user_id)[("compliance_wallets_differ", user_id)]
    assert drift["source"] == {"wallets": [wallet]} and drift["replica"] == {"wallets": []}
    assert drift["repair"].startswith("replayed compliance's result at sequence 1 with its id")
    wait_for(lambda: _rows(owner_engine, held_wallet, u=user_id, w=wallet), "settle's wallet restored")

    time.sleep(PAST_GRACE_SECONDS)
    reconciler.run()
    assert all(row["resolved_at"] is not None for row in reconciler.drifts(user_id).values())
    # Each copy once: one screening, one result, one contact, one decision, one held wallet.
    for sql in ("SELECT 1 FROM compliance.screenings WHERE user_id = :u",
                "SELECT 1 FROM compliance.outbox WHERE envelope->'payload'->>'user_id' = :u",
                "SELECT 1 FROM notify.contacts WHERE user_id = :u",
                "SELECT 1 FROM settlement.compliance_statuses WHERE user_id = :u",
                "SELECT 1 FROM settlement.compliance_wallets WHERE user_id = :u"):
        assert len(_rows(owner_engine, sql, u=user_id)) == 1, sql


def test_a_reviewers_decision_lost_on_its_way_is_applied(stack, bus, owner_engine, isolated_relay, own_reconciler):
    """A reviewer dismisses a name match (and retries: one request); someone takes the request off
    screen-compliance's subscription, so the user would stay held for review. The reconciler replays the
    api's request: the user is approved, and settle's copy of the decision follows."""
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    _, near_name = close_variant_of_a_listed_individual(real_lists())
    user_id = register(api, registration(near_name))["user_id"]
    wait_decision(owner_engine, user_id, "REVIEW")
    [hit] = [h for h in compliance(api, user_id)["screenings"][0]["hits"] if h["code"] == "sanctions.name_match"]
    subscription = "compliance.reviews.v1.screen-compliance"
    push = stack.admin.subscription_body(stack.topology.subscription(subscription),
                                         stack.push_endpoints())["pushConfig"]
    _modify_push_config(stack.admin, subscription, {})
    try:
        reply = requests.post(f"{api}/users/{user_id}/compliance/reviews", timeout=10, headers=as_caller(ANALYST),
                              json={"hit_id": hit["hit_id"], "action": "dismiss"})
        assert reply.status_code == 202, reply.text
        # The client retries (its answer was lost, say): the same request, answered as it was first accepted.
        again = requests.post(f"{api}/users/{user_id}/compliance/reviews", timeout=10, headers=as_caller(ANALYST),
                              json={"hit_id": hit["hit_id"], "action": "dismiss"})
        assert again.status_code == 202 and again.json() == reply.json(), again.text
        event_id = f"ComplianceReviewRequested:{reply.json()['review_id']}"
        assert _swallow(bus, subscription, event_id)
        assert len(_rows(owner_engine, "SELECT 1 FROM identity.outbox WHERE envelope->'payload'->>'user_id' = :u "
                                       "AND topic = 'compliance.reviews.v1'", u=user_id)) == 1
    finally:
        _modify_push_config(stack.admin, subscription, push)
    time.sleep(PAST_GRACE_SECONDS)
    assert wait_decision(owner_engine, user_id)["decision"] == "REVIEW", "the dismissal never arrived"

    reconciler = own_reconciler(isolated_relay().contract.address)
    reconciler.run()
    drift = reconciler.drifts(event_id)[("review_missing", event_id)]
    assert drift["source"] == {"user_id": user_id, "hit_id": hit["hit_id"], "action": "dismiss"}
    assert drift["replica"]["request_received"] is None
    assert drift["repair"].startswith("replayed the api's review request with its id")
    wait_decision(owner_engine, user_id, "APPROVED")
    wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM settlement.compliance_statuses WHERE user_id = :u "
                                         "AND decision = 'APPROVED' AND sequence = 2", u=user_id),
             "settle's copy of the new decision")
    time.sleep(PAST_GRACE_SECONDS)
    reconciler.run()
    assert reconciler.drifts(event_id)[("review_missing", event_id)]["resolved_at"] is not None
    assert not [key for key, row in reconciler.drifts(user_id).items() if row["resolved_at"] is None]
    [review] = compliance(api, user_id)["reviews"]
    assert (review["action"], review["outcome"]) == ("dismiss", "applied")


def _modify_push_config(admin, subscription: str, push_config: dict) -> None:
    reply = requests.post(f"{admin.base}/subscriptions/{subscription}:modifyPushConfig",
                          json={"pushConfig": push_config}, timeout=10)
    reply.raise_for_status()


def _swallow(bus, subscription: str, event_id: str) -> bool:
    """Pull from the paused subscription, acknowledge `event_id`, hand everything else back at once."""
    path = bus.subscriber.subscription_path("local-escrow", subscription)

    def pulled():
        reply = bus.subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=5)
        ours = [m.ack_id for m in reply.received_messages if json.loads(m.message.data)["event_id"] == event_id]
        others = [m.ack_id for m in reply.received_messages if m.ack_id not in ours]
        if ours:
            bus.subscriber.acknowledge(request={"subscription": path, "ack_ids": ours})
        if others:
            bus.subscriber.modify_ack_deadline(request={"subscription": path, "ack_ids": others,
                                                        "ack_deadline_seconds": 0})
        return bool(ours)

    return wait_for(pulled, f"{event_id} pulled and swallowed", timeout=30, interval=0.5)


def test_dead_letters_are_redriven_home_once_and_poison_is_held(stack, bus, owner_engine, isolated_relay,
                                                                own_reconciler):
    settle = stack.topology.function("settle")
    state = stack.layout.read_state()
    documents = [unique_escrow_created() for _ in range(5)]
    ids = [d["payload"]["escrow_id"] for d in documents]
    # settle is down for longer than its subscription retries: every delivery fails until dead-lettered.
    stop_group(state["functions"]["settle"])
    try:
        dead_letters = bus.pull_subscription("settlement.events.v1.settle.dlq")
        for document in documents:
            bus.publish("settlement.events.v1", body(document))
        held = bus.pull(dead_letters, until=lambda ms: len(ms) >= len(documents), timeout=120)
        assert len(held) == len(documents)
    finally:
        state["functions"]["settle"] = stack.start_function(settle, None, state["escrow_address"])
        stack.layout.write_state(state)
    escrows = "SELECT count(*) AS n FROM settlement.escrows WHERE escrow_id = ANY(CAST(:i AS numeric[]))"
    assert _rows(owner_engine, escrows, i=ids)[0]["n"] == 0
    # Poison in the same hold subscription: not an event at all.
    bus.publish("settlement.events.v1.settle.dlq", b"\x00not an event")
    # And one that has already been redriven as often as allowed.
    exhausted = unique_escrow_created()
    key = Envelope.from_bytes(body(exhausted)).dedupe_key
    _execute(owner_engine, "INSERT INTO ops.redrives (subscription, message_key, topic, redrive_count) "
                           "VALUES ('settlement.events.v1.settle', :k, 'settlement.events.v1', 3)", k=key)
    bus.publish("settlement.events.v1.settle.dlq", body(exhausted))

    relay = isolated_relay()
    reconciler = own_reconciler(relay.contract.address)
    run = reconciler.run()
    assert run["redriven"] >= len(documents) and run["held"] >= 2
    wait_for(lambda: _rows(owner_engine, escrows, i=ids)[0]["n"] == len(ids), "every dead letter applied", timeout=60)
    inbox = "SELECT count(*) AS n FROM settlement.inbox WHERE event_id = ANY(:e)"
    assert _rows(owner_engine, inbox, e=[d["event_id"] for d in documents])[0]["n"] == len(documents)
    redriven = _rows(owner_engine, "SELECT redrive_count FROM ops.redrives WHERE message_key = ANY(:k)",
                     k=[Envelope.from_bytes(body(d)).dedupe_key for d in documents])
    assert [r["redrive_count"] for r in redriven] == [1] * len(documents)
    reasons = {row["message_key"]: row["reason"] for row in _rows(
        owner_engine, "SELECT message_key, reason FROM ops.held_dead_letters WHERE subscription = "
                      "'settlement.events.v1.settle' AND held_at >= :t", t=run["started_at"])}
    assert reasons[key] == "dead-lettered again after 3 redrives: the failure persists"
    assert any(reason.startswith("not an event") for reason in reasons.values())
    assert _rows(owner_engine, "SELECT count(*) AS n FROM settlement.escrows WHERE escrow_id = :i",
                 i=exhausted["payload"]["escrow_id"])[0]["n"] == 0


def test_an_escrow_whose_log_the_provider_left_out_is_backfilled_by_relay(
        stack, bus, owner_engine, isolated_relay, own_reconciler):
    with LimitingRpcProxy(stack.layout.rpc_url, max_blocks=10_000) as provider:
        relay = isolated_relay(ETH_RPC_URL=provider.url)
        w3 = stack.web3()
        relay.wait_caught_up(owner_engine)
        kept = create_escrow(w3, relay.contract, w3.eth.accounts[1], w3.eth.accounts[2], ETH, HEALTHY_OBLIGATION)
        lost = create_escrow(w3, relay.contract, w3.eth.accounts[1], w3.eth.accounts[2], ETH, HEALTHY_OBLIGATION)
        provider.omit_transactions.add(lost.tx_hash.lower())
        mine(w3, CONFIRMATIONS)
        relay.wait_caught_up(owner_engine)
        provider.omit_transactions.clear()
        escrow = "SELECT state FROM settlement.escrows WHERE contract = :c AND escrow_id = :i"
        wait_for(lambda: _rows(owner_engine, escrow, c=relay.contract.address, i=kept.escrow_id), "the kept escrow")
        assert not _rows(owner_engine, escrow, c=relay.contract.address, i=lost.escrow_id)
        time.sleep(PAST_GRACE_SECONDS)

        # The reconciler asks relay.tick for a backfill; this test's relay listens on its own tick topic.
        ticks = bus.pull_subscription("relay.tick")
        reconciler = own_reconciler(relay.contract.address)
        reconciler.run()
        drift_key = f"31337:{relay.contract.address}:{lost.escrow_id}"
        drift = reconciler.drifts(relay.contract.address)[("settlement_missing", drift_key)]
        assert drift["repair"] == (f"relay never relayed it: asked relay to rescan from block {lost.block_number} "
                                   "(backfill on relay.tick)")
        [request] = [m for m in bus.pull(ticks, until=bool) if b"backfill" in m.data]
        assert json.loads(request.data)["backfill"] == {"contract": relay.contract.address,
                                                       "from_block": lost.block_number}
        bus.publish(relay.tick_topic, request.data)
        [restored] = wait_for(lambda: _rows(owner_engine, escrow, c=relay.contract.address, i=lost.escrow_id),
                              "the lost escrow backfilled", timeout=60)
        assert restored["state"] == "created"
    # Backfilled once: relay re-staged only the log it lacked.
    assert len(_rows(owner_engine, "SELECT 1 FROM relay.relayed_logs WHERE contract = :c",
                     c=relay.contract.address.lower())) == 2
    reconciler.run()
    assert reconciler.drifts(relay.contract.address)[("settlement_missing", drift_key)]["resolved_at"] is not None
