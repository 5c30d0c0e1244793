"""Chain reorganisations on anvil, within and beyond relay's confirmation depth."""

import json

import sqlalchemy

from shared.stack.chain_driver import create_escrow, mine, reorg, wait_for
from shared.stack.stack import CONFIRMATIONS


def _escrows(engine, contract: str) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            "SELECT escrow_id, state, beneficiary, amount FROM settlement.escrows WHERE contract = :c"),
            {"c": contract}).all()
    return {int(row.escrow_id): row for row in rows}


def test_reorg_within_confirmation_depth_is_never_relayed(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay()
    w3, contract, accounts = stack.web3(), relay.contract, stack.web3().eth.accounts
    relay.wait_caught_up(owner_engine)
    orphan = create_escrow(w3, contract, accounts[1], accounts[2], 10**18, 100 * 10**8)
    # Replace the block before it reaches the confirmation depth with one holding other terms.
    deadline = w3.eth.get_block("latest")["timestamp"] + 86400
    replacement = contract.functions.create(accounts[3], 200 * 10**8, deadline).build_transaction(
        {"from": accounts[1], "value": 5 * 10**17, "gas": 300_000})
    reorg(w3, 1, [({k: replacement[k] for k in ("from", "to", "value", "data", "gas")}, 0)])
    mine(w3, CONFIRMATIONS)
    relay.wait_caught_up(owner_engine)

    stored = wait_for(lambda: _escrows(owner_engine, contract.address) or None, "the canonical escrow")
    assert list(stored) == [orphan.escrow_id]  # same id, the replacement's terms
    assert stored[orphan.escrow_id].beneficiary == accounts[3]
    assert stored[orphan.escrow_id].amount == 5 * 10**17
    with owner_engine.connect() as conn:
        removed = conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM relay.relayed_logs WHERE contract = :c AND removed_at IS NOT NULL"),
            {"c": contract.address.lower()}).scalar()
    assert removed == 0


def test_reorg_beyond_confirmation_depth_is_compensated(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay()
    w3, contract, accounts = stack.web3(), relay.contract, stack.web3().eth.accounts
    events_sub = bus.pull_subscription("settlement.events.v1")
    changes_sub = bus.pull_subscription("settlement.escrows.v1")
    kept = create_escrow(w3, contract, accounts[1], accounts[2], 10**18, 100 * 10**8)
    mine(w3, 3)
    orphan = create_escrow(w3, contract, accounts[3], accounts[4], 2 * 10**18, 300 * 10**8)
    mine(w3, CONFIRMATIONS)
    relay.wait_caught_up(owner_engine)
    wait_for(lambda: len(_escrows(owner_engine, contract.address)) == 2, "both escrows stored")

    # Orphan the second escrow's block and everything after it, deeper than the confirmations.
    depth = w3.eth.block_number - orphan.block_number + 1
    assert depth > CONFIRMATIONS
    reorg(w3, depth)
    mine(w3, CONFIRMATIONS + 1)
    relay.wait_caught_up(owner_engine)

    stored = wait_for(lambda: (e := _escrows(owner_engine, contract.address))
                      and e[orphan.escrow_id].state == "voided" and e, "orphaned escrow voided")
    assert stored[kept.escrow_id].state == "created"

    removal_id = f"31337:{orphan.tx_hash}:0:removed"
    removals = [m for m in bus.pull(events_sub, until=lambda m: any(
        json.loads(x.data)["event_id"] == removal_id for x in m), settle=1.0)
        if json.loads(m.data)["event_id"] == removal_id]
    assert len(removals) == 1
    assert removals[0].attributes["removed"] == "true"
    assert json.loads(removals[0].data)["payload"]["removed"] is True
    assert json.loads(removals[0].data)["causation_id"] == f"31337:{orphan.tx_hash}:0"

    reverted = [json.loads(m.data) for m in bus.pull(changes_sub, until=lambda m: any(
        json.loads(x.data)["payload"]["reverted"] for x in m), settle=1.0)]
    undo = [c for c in reverted if c["payload"]["reverted"]]
    assert len(undo) == 1
    assert undo[0]["payload"]["escrow_id"] == str(orphan.escrow_id)
    assert undo[0]["payload"]["state"] == "voided"
    assert undo[0]["payload"]["previous_state"] == "created"
