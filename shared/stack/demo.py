"""The demo: a user registers and is screened (with a second user whose wallet is on OFAC's list),
escrows live their lifecycle on anvil, and travel
relay -> Pub/Sub -> settle -> PostgreSQL, then are read back through the api. Then the ETH price
crashes on Chainlink and CoinGecko: fetch-price -> assess-margin turn it into margin calls, notify
emails and texts the user, the vendors' callbacks mark the alerts delivered, and the escrow's trace is
printed."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import requests
import sqlalchemy
from google.cloud import pubsub_v1

from shared.ops.trace import escrow_trace, format_trace
from shared.stack.chain_driver import approve, complete, create_escrow, mine, refund, wait_for
from shared.stack.layout import PROJECT_ID
from shared.stack.market_driver import Market
from shared.stack.stack import CONFIRMATIONS, Stack

PRICE_BEFORE, PRICE_AFTER = "2000", "1450"


def run_demo(stack: Stack) -> None:
    """Register a user, run escrow lifecycles on chain, tick the relay, print what the api serves."""
    started = time.monotonic()
    stack.up()
    print(f"stack up in {time.monotonic() - started:.1f}s")
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    w3 = stack.web3()
    contract = stack.escrow()
    accounts = w3.eth.accounts

    engine = sqlalchemy.create_engine(stack.layout.database_url())
    user_id = _register(api, engine, {
        "name": "Demo Depositor", "date_of_birth": "1988-04-02", "country": "DE",
        "email": f"demo-{int(time.time())}@example.org", "phone": "+4915112345678",
        "wallet_addresses": [accounts[1]], "notification_channels": ["email", "sms"],
        "identity_document": {"type": "national_id", "number": "T22000129", "issuing_country": "DE",
                              "expires_on": "2031-08-31"},
    })
    print(f"user {user_id} holds wallet {accounts[1][:10]}…")

    publisher = pubsub_v1.PublisherClient()
    _compliance(api, engine, user_id)

    def publish(topic: str, data: bytes) -> str:
        return publisher.publish(publisher.topic_path(PROJECT_ID, topic), data).result(30)

    market = Market(stack, publish, engine)
    market.settle_at(PRICE_BEFORE)
    print(f"ETH/USD at {PRICE_BEFORE} on the Chainlink feed and CoinGecko; fetch-price published it")

    completed = create_escrow(w3, contract, accounts[1], accounts[4], 2 * 10**18, 3_000 * 10**8)
    leveraged = create_escrow(w3, contract, accounts[1], accounts[7], 3 * 10**18, 3_000 * 10**8)
    refunded = create_escrow(w3, contract, accounts[1], accounts[5], 5 * 10**17, 800 * 10**8)
    waiting = create_escrow(w3, contract, accounts[3], accounts[6], 10**18, 1_250_50000000)
    approve(w3, contract, completed)
    complete(w3, contract, completed)
    refund(w3, contract, refunded)
    approve(w3, contract, waiting)
    print("on chain: #%d created→approved→completed, #%d created→refunded, #%d created→approved, #%d created"
          % (completed.escrow_id, refunded.escrow_id, waiting.escrow_id, leveraged.escrow_id))
    mine(w3, CONFIRMATIONS)

    tick_started = time.monotonic()
    publish("relay.tick", json.dumps({"source": "demo"}).encode())
    print("published relay.tick")

    expected = {completed.escrow_id: "completed", refunded.escrow_id: "refunded", waiting.escrow_id: "approved",
                leveraged.escrow_id: "created"}

    def settled():
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                "SELECT escrow_id, state FROM settlement.escrows WHERE contract = :c AND escrow_id = ANY(:ids)"),
                {"c": contract.address, "ids": list(expected)}).all()
        return {int(r.escrow_id): r.state for r in rows} == expected

    wait_for(settled, "settle to reach the final states", timeout=60)
    print(f"settle reached every final state {time.monotonic() - tick_started:.1f}s after the tick")

    page = requests.get(f"{api}/escrows", params={"user": accounts[1]}, timeout=30).json()
    print(f"GET /escrows?user={accounts[1][:10]}… →")
    for item in page["items"]:
        print(f"  escrow #{item['escrow_id']} state={item['state']} amount={item['amount']} wei "
              f"obligation=${item['obligation_usd']} updated={item['updated_at']}")
    detail = requests.get(f"{api}/escrows/{page['items'][0]['id']}", timeout=30).json()
    print(f"GET /escrows/{detail['id']} history: "
          + " → ".join(f"{t['to_state']}@{t['block_number']}" for t in detail["transitions"]))
    _price_crash(stack, market, engine, contract.address, [waiting.escrow_id, leveraged.escrow_id])
    portfolio = requests.get(f"{api}/users/{user_id}/portfolio", timeout=30).json()
    print(f"GET /users/{portfolio['user_id']}/portfolio → total: " + ", ".join(
        f"{k}={v}" for k, v in portfolio["total"].items()))
    _alerts_and_trace(engine, contract.address, leveraged.escrow_id)
    market.settle_at(PRICE_BEFORE)  # leave the market where the next demo run expects it
    engine.dispose()
    status = stack.run_relay_admin(["status"])
    print("relay status:", json.dumps({k: v for k, v in json.loads(status.stdout).items()
                                      if k in ("checkpoint_block", "head", "lag_blocks")}))
    print(f"demo done in {time.monotonic() - started:.1f}s; logs in {stack.layout.logs}; "
          "`make down` stops the stack")


def _register(api: str, engine, body: dict) -> str:
    """Register a user; on a stack left up from an earlier demo its wallet has an owner already: reuse it.

    A wallet belongs to one user, so a second registration with it answers 409.
    """
    reply = requests.post(f"{api}/users", timeout=30, json=body)
    if reply.status_code != 409:
        reply.raise_for_status()
        return reply.json()["user_id"]
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT user_id FROM identity.wallet_owners WHERE wallet = :w"),
                            {"w": body["wallet_addresses"][0]}).scalar_one()


def _compliance(api: str, engine, clean_user_id: str) -> None:
    """Show the clean user's screening, then register one with a real OFAC-listed wallet and show its."""
    with engine.connect() as conn:
        snapshot = conn.execute(sqlalchemy.text(
            "SELECT snapshot_id, counts FROM compliance.list_snapshots ORDER BY snapshot_id DESC LIMIT 1")).first()
        listed = conn.execute(sqlalchemy.text(
            "SELECT address FROM compliance.listed_wallets WHERE snapshot_id = :s ORDER BY address LIMIT 1"),
            {"s": snapshot.snapshot_id}).scalar()
    print(f"sanctions list snapshot #{snapshot.snapshot_id} loaded by refresh-sanctions from the local OFAC "
          f"server: {snapshot.counts}")
    sanctioned = _register(api, engine, {
        "name": "Demo Counterparty", "date_of_birth": "1975-09-30", "country": "NL",
        "email": f"counterparty-{int(time.time())}@example.org", "phone": "+31612345678",
        "wallet_addresses": [listed], "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": "NX7Y0P2Q1", "issuing_country": "NL",
                              "expires_on": "2030-02-28"},
    })
    for label, user_id in (("clean user", clean_user_id), ("user with a listed wallet", sanctioned)):
        def screened(user_id=user_id):
            history = requests.get(f"{api}/users/{user_id}/compliance", timeout=30).json()
            return history if history["status"] != "PENDING" else None

        history = wait_for(screened, f"screen-compliance to screen the {label}", timeout=60)
        [run] = history["screenings"]
        hits = "; ".join(f"{h['code']} {h['evidence'].get('wallet', '')}".strip() for h in run["hits"]) or "no hits"
        print(f"screen-compliance: {label} {user_id[:8]}… → {history['status']} (AML score {run['score']}, "
              f"list snapshot #{run['list_snapshot']['snapshot_id']}): {hits}")


def _price_crash(stack: Stack, market: Market, engine, contract: str, escrow_ids: list[int]) -> None:
    """Crash ETH/USD on both sources, tick fetch-price, and print the margin events assess-margin emits."""
    def health():
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT escrow_id, health_factor, tier FROM risk.position_health "
                "WHERE contract = :c AND escrow_id = ANY(:ids) ORDER BY escrow_id"),
                {"c": contract, "ids": escrow_ids}).all()

    wait_for(lambda: len(health()) == len(escrow_ids), "assess-margin to assess the open escrows", timeout=60)
    for row in health():
        print(f"  escrow #{row.escrow_id}: health factor {row.health_factor} ({row.tier}) at ${PRICE_BEFORE}")
    crash_started = time.monotonic()
    market.quote(PRICE_AFTER)
    decision = market.tick()
    print(f"ETH/USD crashed to {PRICE_AFTER}; fetch-price: {decision.status} ({decision.reason}), "
          f"published {decision.published_event_id}")
    market.wait_risk_caught_up()

    def margin_events():
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT escrow_id, previous_tier, tier, health_factor, correlation_id FROM risk.margin_events "
                "WHERE contract = :c AND escrow_id = ANY(:ids) AND cause_event_id = :cause ORDER BY escrow_id"),
                {"c": contract, "ids": escrow_ids, "cause": decision.published_event_id}).all()

    events = wait_for(margin_events, "margin events", timeout=30)
    print(f"assess-margin emitted {len(events)} margin events on risk.margin-events.v1 "
          f"{time.monotonic() - crash_started:.1f}s after the crash:")
    for event in events:
        print(f"  escrow #{event.escrow_id}: {event.previous_tier} → {event.tier}, health factor "
              f"{event.health_factor} (correlation {event.correlation_id[:24]}…)")


def _alerts_and_trace(engine, contract: str, escrow_id: int) -> None:
    """Wait for the user's alerts about the escrow to be delivered, then print the escrow's trace."""
    def delivered():
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                "SELECT d.channel, d.status FROM notify.deliveries d JOIN risk.margin_events m "
                "ON m.event_id = d.event_id WHERE m.contract = :c AND m.escrow_id = :i"),
                {"c": contract, "i": escrow_id}).all()
        return rows if rows and all(r.status not in ("pending", "sent") for r in rows) else None

    rows = wait_for(delivered, "the margin call's deliveries", timeout=60)
    print("notify: " + ", ".join(f"{r.channel} {r.status}" for r in rows)
          + " (local SendGrid and Twilio, their signed callbacks)")
    print(f"trace of escrow #{escrow_id} (python -m shared.stack trace 31337:{contract}:{escrow_id}):")
    with engine.connect() as conn:
        print(format_trace(escrow_trace(conn, 31337, contract, Decimal(escrow_id))))
