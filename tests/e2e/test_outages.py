"""Faults the platform rides out on its own: a database outage mid-burst, a process killed mid-request.

The end state is what counts: every escrow exactly once in settlement and in risk, every margin event
delivered once, and nothing dead-lettered.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import requests
import sqlalchemy

from shared.stack import services
from shared.stack.chain_driver import create_escrow, mine, new_funded_account, wait_for
from tests.support.events import body, unique_escrow_created
from tests.support.pubsub import envelopes

ETH, USD = 10**18, 10**8
BURST = 200
OUTAGE_SECONDS = 60
# 1 ETH against 1500 USD at 2000 USD/ETH: health factor 1.1, MARGIN_CALL at creation, so every escrow
# of the burst makes one margin event and one email.
OBLIGATION_USD = 1500


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql), params).scalar_one()


def _register(stack, wallet: str) -> str:
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    reply = requests.post(f"{api}/users", timeout=10, json={
        "name": "Outage Watcher", "date_of_birth": "1980-01-01", "country": "US",
        "email": f"outage-{uuid.uuid4().hex[:8]}@example.org", "wallet_addresses": [wallet],
        "phone": "+14155550100", "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": "P0000001", "issuing_country": "US",
                              "expires_on": "2031-01-01"}})
    assert reply.status_code == 201, reply.text
    return reply.json()["user_id"]


class Ticker:
    """Cloud Scheduler for one relay: a tick every `interval` seconds until stopped."""

    def __init__(self, tick, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tick, interval), daemon=True)
        self._thread.start()

    def _run(self, tick, interval: float) -> None:
        while not self._stop.wait(interval):
            tick()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_sixty_second_database_outage_mid_burst_loses_nothing_and_dead_letters_nothing(
        stack, bus, owner_engine, market, isolated_relay):
    dead_letters = {topic: bus.pull_subscription(topic) for topic in stack.topology.dead_letter_topics()}
    relay = isolated_relay()
    relay_dead_letters = bus.pull_subscription(relay.tick_topic + ".dlq")
    w3 = stack.web3()
    depositor = new_funded_account(w3, 1000 * ETH)
    user_id = _register(stack, depositor)
    wait_for(lambda: _count(owner_engine, "SELECT count(*) FROM notify.contacts WHERE user_id = :u", u=user_id),
             "notify to project the contact")
    contract = relay.contract.address
    ticker = Ticker(relay.tick, interval=2.0)
    try:
        for _ in range(BURST // 2):
            create_escrow(w3, relay.contract, depositor, w3.eth.accounts[2], ETH, OBLIGATION_USD * USD)
        services.stop_postgres(stack.layout)
        stopped = time.monotonic()
        try:
            for _ in range(BURST - BURST // 2):
                create_escrow(w3, relay.contract, depositor, w3.eth.accounts[2], ETH, OBLIGATION_USD * USD)
            mine(w3, 2)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        finally:
            services.restart_postgres(stack.layout)
        recovered = time.monotonic()

        escrows = "SELECT count(*) FROM settlement.escrows WHERE contract = :c"
        positions = "SELECT count(*) FROM risk.positions WHERE contract = :c"
        margin = "SELECT count(*) FROM risk.margin_events WHERE contract = :c"
        sent = ("SELECT count(*) FROM notify.deliveries d JOIN risk.margin_events m ON m.event_id = d.event_id "
                "WHERE m.contract = :c AND d.status IN ('sent', 'delivered')")
        wait_for(lambda: _count(owner_engine, sent, c=contract) == BURST, "every margin event delivered",
                 timeout=120, interval=1.0)
        converged = time.monotonic() - recovered
    finally:
        ticker.stop()
    print(f"converged {converged:.1f}s after a {OUTAGE_SECONDS}s outage")
    assert converged <= 60, f"converged {converged:.1f}s after recovery"
    # Exactly once at every stage.
    assert _count(owner_engine, escrows, c=contract) == BURST
    assert _count(owner_engine, positions, c=contract) == BURST
    assert _count(owner_engine, margin, c=contract) == BURST
    assert _count(owner_engine, "SELECT count(*) FROM notify.deliveries d JOIN risk.margin_events m "
                                "ON m.event_id = d.event_id WHERE m.contract = :c", c=contract) == BURST
    assert _count(owner_engine, "SELECT count(*) FROM settlement.transitions t JOIN settlement.escrows e "
                                "USING (chain_id, contract, escrow_id) WHERE e.contract = :c", c=contract) == BURST
    # Nothing went to a dead-letter topic.
    held = {topic: envelopes(bus.pull(sub, timeout=2)) for topic, sub in dead_letters.items()}
    held["relay tick"] = envelopes(bus.pull(relay_dead_letters, timeout=1))
    assert {topic: len(messages) for topic, messages in held.items() if messages} == {}


def test_a_function_killed_mid_request_finishes_on_redelivery(stack, bus, owner_engine):
    """settle's request is held on a lock and killed there. A transaction dies with its client; a creation's
    one autocommitted statement goes on without it and commits, its state change leased to the dead
    delivery, as if the instance had died between its commit and its publish. Pub/Sub pushes the event
    again: the copy is answered 503 while the lease holds (2 x PUBLISH_TIMEOUT_SECONDS), then publishes
    the state change. Either way: applied once, published once."""
    settle = stack.topology.function("settle")
    address = stack.layout.read_state()["escrow_address"]
    port = stack.layout.base_port + 52
    topic = bus.own_topic()
    document = unique_escrow_created()
    changes = bus.pull_subscription("settlement.escrows.v1")
    doomed = stack.start_function(settle, None, address, port=port, instance="settle-killed-mid-request",
                                  env_overrides={"PUBLISH_TIMEOUT_SECONDS": "2"})
    # Its own subscription: the local stack's redelivers within a second and would dead-letter the copy
    # after 10 attempts, inside the lease (production's backs off from 10 s: shared/topology.yaml).
    bus.push_subscription(topic, f"http://127.0.0.1:{port}/", topic + ".dlq", max_attempts=100)
    locker = owner_engine.connect()
    transaction = locker.begin()
    try:
        locker.execute(sqlalchemy.text("LOCK TABLE settlement.escrows IN ACCESS EXCLUSIVE MODE"))
        bus.publish(topic, body(document))
        wait_for(lambda: _count(owner_engine, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'fn_settle' "
                                              "AND wait_event_type = 'Lock'"), "settle blocked mid-request")
        os.killpg(doomed, signal.SIGKILL)
    finally:
        transaction.rollback()
        locker.close()
    healthy = stack.start_function(settle, None, address, port=port, instance="settle-after-the-kill-mid-request")
    try:
        escrow = "SELECT count(*) FROM settlement.escrows WHERE escrow_id = :i"
        wait_for(lambda: _count(owner_engine, escrow, i=document["payload"]["escrow_id"]) == 1,
                 "the escrow applied", timeout=60)
        published = envelopes(bus.pull(changes, until=lambda ms: any(
            json.loads(m.data)["payload"]["escrow_id"] == document["payload"]["escrow_id"] for m in ms),
            timeout=60, settle=3.0))
        assert [e["payload"]["escrow_id"] for e in published].count(document["payload"]["escrow_id"]) == 1
        assert _count(owner_engine, "SELECT count(*) FROM settlement.inbox WHERE event_id = :e",
                      e=document["event_id"]) == 1
    finally:
        services.stop(healthy)
