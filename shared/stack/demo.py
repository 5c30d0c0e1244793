"""The demo: escrows created on anvil travel relay -> Pub/Sub -> settle -> PostgreSQL."""

from __future__ import annotations

import json
import time

import sqlalchemy
from google.cloud import pubsub_v1

from shared.stack.chain_driver import create_escrow, mine, wait_for
from shared.stack.layout import PROJECT_ID
from shared.stack.stack import CONFIRMATIONS, Stack


def run_demo(stack: Stack) -> None:
    """Create escrows on chain, tick the relay, and print what settle stored."""
    started = time.monotonic()
    stack.up()
    print(f"stack up in {time.monotonic() - started:.1f}s")
    w3 = stack.web3()
    contract = stack.escrow()
    accounts = w3.eth.accounts
    created = [
        create_escrow(w3, contract, accounts[1], accounts[4], 2 * 10**18, 3_000 * 10**8),
        create_escrow(w3, contract, accounts[2], accounts[5], 5 * 10**17, 800 * 10**8),
        create_escrow(w3, contract, accounts[3], accounts[6], 10**18, 1_250_50000000),
    ]
    for escrow in created:
        print(f"on chain: escrow #{escrow.escrow_id} {escrow.amount_wei / 1e18} ETH "
              f"from {escrow.depositor[:10]}… to {escrow.beneficiary[:10]}… (tx {escrow.tx_hash[:12]}…)")
    mine(w3, CONFIRMATIONS)

    tick_started = time.monotonic()
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(publisher.topic_path(PROJECT_ID, "relay.tick"), json.dumps({"source": "demo"}).encode()).result(30)
    print("published relay.tick")

    engine = sqlalchemy.create_engine(stack.layout.database_url())
    ids = [escrow.escrow_id for escrow in created]
    query = sqlalchemy.text(
        "SELECT escrow_id, state, depositor, beneficiary, amount, obligation_usd, created_block, created_event_id "
        "FROM settlement.escrows WHERE contract = :contract AND escrow_id = ANY(:ids) ORDER BY escrow_id"
    )

    def stored():
        with engine.connect() as conn:
            rows = conn.execute(query, {"contract": contract.address, "ids": ids}).all()
        return rows if len(rows) == len(ids) else None

    rows = wait_for(stored, "settle to store the escrows", timeout=60)
    print(f"settle stored {len(rows)} escrows {time.monotonic() - tick_started:.1f}s after the tick:")
    for row in rows:
        print(f"  #{row.escrow_id} state={row.state} amount={row.amount} wei obligation=${row.obligation_usd} "
              f"block={row.created_block} event={row.created_event_id[:30]}…")
    engine.dispose()
    print(f"demo done in {time.monotonic() - started:.1f}s; logs in {stack.layout.logs}; "
          "`make down` stops the stack")
