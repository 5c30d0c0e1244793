"""Escrows created on anvil travel relay -> settlement.events.v1 -> settle -> PostgreSQL and
settlement.escrows.v1, through push subscriptions into the running functions."""

import json

import sqlalchemy

from shared.stack.chain_driver import create_escrow, mine, wait_for
from shared.stack.stack import CONFIRMATIONS
from tests.support.events import state_change_id
from tests.support.pubsub import envelopes


def _escrow_row(engine, contract: str, escrow_id: int):
    with engine.connect() as conn:
        return conn.execute(
            sqlalchemy.text("SELECT * FROM settlement.escrows WHERE contract = :c AND escrow_id = :i"),
            {"c": contract, "i": escrow_id},
        ).mappings().first()


def test_escrow_created_on_chain_is_stored_and_published(stack, bus, owner_engine):
    w3 = stack.web3()
    contract = stack.escrow()
    events_sub = bus.pull_subscription("settlement.events.v1")
    changes_sub = bus.pull_subscription("settlement.escrows.v1")
    depositor, beneficiary = w3.eth.accounts[7], w3.eth.accounts[8]
    created = create_escrow(w3, contract, depositor, beneficiary, 3 * 10**18, 4_500_12345678)

    mine(w3, CONFIRMATIONS)
    bus.publish("relay.tick", json.dumps({"source": "test"}).encode())

    row = wait_for(lambda: _escrow_row(owner_engine, contract.address, created.escrow_id), "escrow row")
    assert row["state"] == "created"
    assert row["depositor"] == depositor
    assert row["beneficiary"] == beneficiary
    assert row["amount"] == 3 * 10**18
    assert str(row["obligation_usd"]) == "4500.12345678"
    assert row["created_block"] == created.block_number
    expected_event_id = f"31337:{created.tx_hash}:0"
    assert row["created_event_id"] == expected_event_id

    relayed = [e for e in envelopes(bus.pull(events_sub, until=lambda m: any(
        json.loads(x.data)["event_id"] == expected_event_id for x in m), settle=1.0))
        if e["event_id"] == expected_event_id]
    assert len(relayed) == 1
    assert relayed[0]["event_type"] == "EscrowCreated"
    assert relayed[0]["payload"]["escrow_id"] == str(created.escrow_id)
    assert relayed[0]["payload"]["block_number"] == created.block_number

    change_id = state_change_id(relayed[0])
    changes = [e for e in envelopes(bus.pull(changes_sub, until=lambda m: any(
        json.loads(x.data)["event_id"] == change_id for x in m), settle=1.0)) if e["event_id"] == change_id]
    assert len(changes) == 1
    assert changes[0]["payload"]["state"] == "created"
    assert changes[0]["causation_id"] == expected_event_id
    assert changes[0]["correlation_id"] == expected_event_id

    with owner_engine.connect() as conn:
        transitions = conn.execute(
            sqlalchemy.text("SELECT to_state FROM settlement.transitions WHERE event_id = :e"),
            {"e": expected_event_id},
        ).scalars().all()
    assert transitions == ["created"]


def test_relay_checkpoint_keeps_block_hash_and_skips_unconfirmed_blocks(stack, bus, owner_engine):
    w3 = stack.web3()
    contract = stack.escrow().address.lower()
    bus.publish("relay.tick", b"{}")
    head = w3.eth.block_number

    def checkpoint():
        with owner_engine.connect() as conn:
            row = conn.execute(sqlalchemy.text(
                "SELECT block_number, block_hash FROM relay.checkpoints WHERE contract = :c"), {"c": contract}).first()
        return row if row and row.block_number == head - CONFIRMATIONS else None

    row = wait_for(checkpoint, "relay checkpoint at head - confirmations")
    assert row.block_hash == w3.eth.get_block(row.block_number)["hash"].to_0x_hex()
