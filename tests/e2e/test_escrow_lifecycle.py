"""Escrow lifecycles on anvil, through relay and settle, read back from Postgres and Pub/Sub."""

import json

import sqlalchemy

from shared.stack.chain_driver import approve, complete, create_escrow, mine, refund, wait_for
from tests.support.pubsub import envelopes


def _states(engine, contract: str) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            "SELECT escrow_id, state FROM settlement.escrows WHERE contract = :c"), {"c": contract}).all()
    return {int(row.escrow_id): row.state for row in rows}


def _history(engine, contract: str, escrow_id: int) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT to_state FROM settlement.transitions WHERE contract = :c AND escrow_id = :i ORDER BY sequence"),
            {"c": contract, "i": escrow_id}).scalars().all()


def test_lifecycles_of_several_escrows_including_refunds(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay()
    w3, contract, accounts = stack.web3(), relay.contract, stack.web3().eth.accounts
    changes_sub = bus.pull_subscription("settlement.escrows.v1")
    events_sub = bus.pull_subscription("settlement.events.v1")

    completed = create_escrow(w3, contract, accounts[1], accounts[2], 10**18, 1_000 * 10**8)
    refunded_early = create_escrow(w3, contract, accounts[3], accounts[4], 2 * 10**18, 500 * 10**8)
    refunded_late = create_escrow(w3, contract, accounts[5], accounts[6], 3 * 10**18, 900 * 10**8,
                                  lifetime_seconds=3600)
    approve(w3, contract, completed)
    complete(w3, contract, completed)
    refund(w3, contract, refunded_early)
    approve(w3, contract, refunded_late)
    # Have settle apply the approval before the refund exists: both transitions are legal from `created`,
    # so a refund pushed ahead of its approval would apply first and the approval would join the history
    # only as a late event (tests/e2e/test_settle_ordering.py), not as a step. Relay being caught up is not
    # enough: the approval may reach settle ahead of the creation and wait for a redelivery.
    mine(w3, 2)
    relay.wait_caught_up(owner_engine)
    wait_for(lambda: _states(owner_engine, contract.address).get(refunded_late.escrow_id) == "approved",
             "settle applied the approval")
    w3.provider.make_request("evm_increaseTime", [7200])
    mine(w3, 1)  # the refund is judged against a block past the deadline
    refund(w3, contract, refunded_late)
    mine(w3, 2)
    relay.wait_caught_up(owner_engine)

    expected = {completed.escrow_id: "completed", refunded_early.escrow_id: "refunded",
                refunded_late.escrow_id: "refunded"}
    wait_for(lambda: _states(owner_engine, contract.address) == expected, "final escrow states")
    assert _history(owner_engine, contract.address, completed.escrow_id) == ["created", "approved", "completed"]
    assert _history(owner_engine, contract.address, refunded_early.escrow_id) == ["created", "refunded"]
    assert _history(owner_engine, contract.address, refunded_late.escrow_id) == ["created", "approved", "refunded"]

    def ours(messages):
        return [m for m in messages if json.loads(m.data)["payload"]["contract"] == contract.address]

    # Every log went out once, with its block hash in the attributes.
    logs = ours(bus.pull(events_sub, until=lambda m: len(ours(m)) >= 8, settle=1.0))
    assert len(logs) == 8
    assert len({json.loads(m.data)["event_id"] for m in logs}) == 8
    for message in logs:
        payload = json.loads(message.data)["payload"]
        assert message.attributes["block_hash"] == payload["block_hash"]
        assert message.attributes["removed"] == "false"

    # Every applied change was published, in order, carrying the chain log's correlation id.
    changes = envelopes(ours(bus.pull(changes_sub, until=lambda m: len(ours(m)) >= 8, settle=1.0)))
    by_escrow: dict[int, list] = {}
    for change in sorted(changes, key=lambda e: e["payload"]["sequence"]):
        by_escrow.setdefault(int(change["payload"]["escrow_id"]), []).append(change)
    assert [c["payload"]["state"] for c in by_escrow[completed.escrow_id]] == ["created", "approved", "completed"]
    assert [c["payload"]["state"] for c in by_escrow[refunded_late.escrow_id]] == ["created", "approved", "refunded"]
    for escrow_changes in by_escrow.values():
        # One correlation id per escrow, its creation log's; each change is caused by its own chain log.
        assert {c["correlation_id"] for c in escrow_changes} == {escrow_changes[0]["causation_id"]}
        assert all(c["causation_id"].startswith("31337:0x") for c in escrow_changes)

    # settle applied each log once; a creation by its one statement (a later step too, unless it reached
    # settle before the step it follows: it then waits, and whichever path finds the escrow ready applies it).
    event_ids = {json.loads(m.data)["event_id"] for m in logs}
    applied = _applied_by(stack, event_ids)
    assert {event_id: len(ways) for event_id, ways in applied.items()} == dict.fromkeys(event_ids, 1)
    creations = {json.loads(m.data)["event_id"] for m in logs if json.loads(m.data)["event_type"] == "EscrowCreated"}
    assert len(creations) == 3 and all(applied[event_id] == ["one statement"] for event_id in creations)


def _applied_by(stack, event_ids: set[str]) -> dict[str, list[str]]:
    """event id -> how settle applied it, one entry per "event applied" line it logged."""
    applied: dict[str, list[str]] = {}
    for line in (stack.layout.logs / "settle.log").read_text(errors="replace").splitlines():
        if '"event applied"' in line:
            record = json.loads(line)
            if record["event_id"] in event_ids:
                applied.setdefault(record["event_id"], []).append(record.get("applied_by"))
    return applied
