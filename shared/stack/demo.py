"""The demo: a user registers, escrows live their lifecycle on anvil, and travel
relay -> Pub/Sub -> settle -> PostgreSQL, then are read back through the api."""

from __future__ import annotations

import json
import time

import requests
import sqlalchemy
from google.cloud import pubsub_v1

from shared.stack.chain_driver import approve, complete, create_escrow, mine, refund, wait_for
from shared.stack.layout import PROJECT_ID
from shared.stack.stack import CONFIRMATIONS, Stack


def run_demo(stack: Stack) -> None:
    """Register a user, run escrow lifecycles on chain, tick the relay, print what the api serves."""
    started = time.monotonic()
    stack.up()
    print(f"stack up in {time.monotonic() - started:.1f}s")
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    w3 = stack.web3()
    contract = stack.escrow()
    accounts = w3.eth.accounts

    user = requests.post(f"{api}/users", timeout=30, json={
        "name": "Demo Depositor", "date_of_birth": "1988-04-02", "country": "DE",
        "email": f"demo-{int(time.time())}@example.org", "phone": "+4915112345678",
        "wallet_addresses": [accounts[1]], "notification_channels": ["email", "sms"],
    })
    user.raise_for_status()
    print(f"registered user {user.json()['user_id']} with wallet {accounts[1][:10]}…")

    completed = create_escrow(w3, contract, accounts[1], accounts[4], 2 * 10**18, 3_000 * 10**8)
    refunded = create_escrow(w3, contract, accounts[1], accounts[5], 5 * 10**17, 800 * 10**8)
    waiting = create_escrow(w3, contract, accounts[3], accounts[6], 10**18, 1_250_50000000)
    approve(w3, contract, completed)
    complete(w3, contract, completed)
    refund(w3, contract, refunded)
    approve(w3, contract, waiting)
    print("on chain: #%d created→approved→completed, #%d created→refunded, #%d created→approved"
          % (completed.escrow_id, refunded.escrow_id, waiting.escrow_id))
    mine(w3, CONFIRMATIONS)

    tick_started = time.monotonic()
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(publisher.topic_path(PROJECT_ID, "relay.tick"),
                      json.dumps({"source": "demo"}).encode()).result(30)
    print("published relay.tick")

    expected = {completed.escrow_id: "completed", refunded.escrow_id: "refunded", waiting.escrow_id: "approved"}
    engine = sqlalchemy.create_engine(stack.layout.database_url())

    def settled():
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                "SELECT escrow_id, state FROM settlement.escrows WHERE contract = :c AND escrow_id = ANY(:ids)"),
                {"c": contract.address, "ids": list(expected)}).all()
        return {int(r.escrow_id): r.state for r in rows} == expected

    wait_for(settled, "settle to reach the final states", timeout=60)
    engine.dispose()
    print(f"settle reached every final state {time.monotonic() - tick_started:.1f}s after the tick")

    page = requests.get(f"{api}/escrows", params={"user": accounts[1]}, timeout=30).json()
    print(f"GET /escrows?user={accounts[1][:10]}… →")
    for item in page["items"]:
        print(f"  escrow #{item['escrow_id']} state={item['state']} amount={item['amount']} wei "
              f"obligation=${item['obligation_usd']} updated={item['updated_at']}")
    detail = requests.get(f"{api}/escrows/{page['items'][0]['id']}", timeout=30).json()
    print(f"GET /escrows/{detail['id']} history: "
          + " → ".join(f"{t['to_state']}@{t['block_number']}" for t in detail["transitions"]))
    status = stack.run_relay_admin(["status"])
    print("relay status:", json.dumps({k: v for k, v in json.loads(status.stdout).items()
                                      if k in ("checkpoint_block", "head", "lag_blocks")}))
    print(f"demo done in {time.monotonic() - started:.1f}s; logs in {stack.layout.logs}; "
          "`make down` stops the stack")
