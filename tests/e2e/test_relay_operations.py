"""relay under operational stress: a crash mid-range, overlapping ticks, a provider range limit,
and the operator commands."""

import json
import os
import signal
import threading
import time

import sqlalchemy

from shared.relay.service import lock_key
from shared.relay.settings import ChainSettings
from shared.stack.chain_driver import create_escrow, mine, wait_for, wait_for_equal
from shared.stack.layout import CHAIN_ID
from shared.stack.stack import CONFIRMATIONS
from tests.support.rpc_proxy import LimitingRpcProxy


def _create_many(stack, contract, count: int) -> list:
    w3, accounts = stack.web3(), stack.web3().eth.accounts
    created = [create_escrow(w3, contract, accounts[1 + i % 5], accounts[6 + i % 3], 10**15 + i, 10**9)
               for i in range(count)]
    mine(w3, CONFIRMATIONS)
    return created


def _relayed_and_settled(engine, contract: str) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        relayed = conn.execute(sqlalchemy.text(
            "SELECT count(*), count(DISTINCT event_id) FROM relay.relayed_logs WHERE contract = :c"),
            {"c": contract.lower()}).first()
        settled = conn.execute(sqlalchemy.text(
            "SELECT count(*), count(DISTINCT escrow_id) FROM settlement.transitions WHERE contract = :c"),
            {"c": contract}).first()
    return relayed[0], relayed[1], settled[0], settled[1]


def test_relay_killed_mid_backfill_resumes_without_gap_or_duplicate(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay(RELAY_BLOCK_RANGE="1")
    created = _create_many(stack, relay.contract, 60)
    first, target = created[0].block_number, stack.web3().eth.block_number - CONFIRMATIONS
    relay.tick()
    row = wait_for(lambda: (r := relay.checkpoint(owner_engine)) and r.block_number >= first + 5 and r,
                   "the backfill to be under way", interval=0.02)
    os.killpg(relay.pid, signal.SIGKILL)  # a crash, not a shutdown
    assert row.block_number < target, "the crash must land mid-backfill for this test to mean anything"

    relay.restart()
    relay.wait_caught_up(owner_engine)
    wait_for_equal(lambda: _relayed_and_settled(owner_engine, relay.contract.address), (60, 60, 60, 60),
                   "every escrow relayed and settled exactly once", timeout=60)


def test_logs_a_dead_tick_staged_go_out_with_the_next_tick_not_after_their_lease(
        stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay()
    created = _create_many(stack, relay.contract, 2)
    relay.wait_caught_up(owner_engine)
    wait_for_equal(lambda: _relayed_and_settled(owner_engine, relay.contract.address), (2, 2, 2, 2), "both settled")
    events = bus.pull_subscription("settlement.events.v1")
    # As a tick leaves its last range when it is killed between the commit and the publish: staged,
    # leased for as long as its publish could take, never sent.
    with owner_engine.begin() as conn:
        [dead] = conn.execute(sqlalchemy.text(
            "UPDATE relay.outbox SET published_at = NULL, message_id = NULL, "
            "publishing_until = now() + interval '1 hour' WHERE event_id = :e RETURNING event_id"),
            {"e": f"31337:{created[1].tx_hash}:0"}).scalars().all()
    relay.tick()
    arrived = bus.pull(events, until=lambda ms: any(json.loads(m.data)["event_id"] == dead for m in ms), settle=1.0)
    assert [json.loads(m.data)["event_id"] for m in arrived].count(dead) == 1
    with owner_engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT published_at IS NOT NULL AND publishing_until IS NULL "
                                            "FROM relay.outbox WHERE event_id = :e"), {"e": dead}).scalar()
    log = (stack.layout.logs / f"relay-{relay.tick_topic}.log").read_text()
    assert "staged logs of a tick that died before publishing them are published now" in log


def test_overlapping_ticks_scan_once(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay(RELAY_BLOCK_RANGE="2")
    _create_many(stack, relay.contract, 30)
    threads = [threading.Thread(target=relay.tick) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    relay.wait_caught_up(owner_engine)
    wait_for_equal(lambda: _relayed_and_settled(owner_engine, relay.contract.address), (30, 30, 30, 30),
                   "every escrow relayed and settled exactly once")


def test_tick_returns_at_once_while_another_relay_holds_the_lock(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay()
    _create_many(stack, relay.contract, 3)
    chain = ChainSettings(rpc_url="", chain_id=CHAIN_ID, escrow_address=relay.contract.address, confirmations=0,
                          start_block=0, block_range=1, time_budget_seconds=1)
    with owner_engine.connect() as holder:
        assert holder.execute(sqlalchemy.select(sqlalchemy.func.pg_try_advisory_lock(lock_key(chain)))).scalar()
        holder.commit()
        relay.tick()
        time.sleep(3)  # the tick was delivered and answered while the lock was held
        assert relay.checkpoint(owner_engine) is None
        holder.execute(sqlalchemy.select(sqlalchemy.func.pg_advisory_unlock(lock_key(chain))))
        holder.commit()
    relay.wait_caught_up(owner_engine)
    log = (stack.layout.logs / f"relay-{relay.tick_topic}.log").read_text()
    assert "another relay is scanning; returning" in log


def test_provider_range_limit_halves_the_range_and_relays_everything(stack, bus, owner_engine, isolated_relay):
    with LimitingRpcProxy(stack.layout.rpc_url, max_blocks=4) as proxy:
        relay = isolated_relay(ETH_RPC_URL=proxy.url, RELAY_BLOCK_RANGE="64")
        _create_many(stack, relay.contract, 20)
        relay.wait_caught_up(owner_engine)
        assert proxy.refused >= 4  # 64 -> 32 -> 16 -> 8 -> 4
        assert all(end - start + 1 <= 4 for start, end in proxy.served_ranges)
        # Back at the limit, or one doubling past it after a streak of successes.
        assert relay.checkpoint(owner_engine).range_size in (4, 8)
    wait_for_equal(lambda: _relayed_and_settled(owner_engine, relay.contract.address), (20, 20, 20, 20),
                   "every escrow relayed and settled")


def test_status_shows_lag_and_rewind_republishes_same_ids(stack, bus, owner_engine, isolated_relay):
    relay = isolated_relay()
    created = _create_many(stack, relay.contract, 4)
    overrides = {"RELAY_START_BLOCK": relay.env_overrides["RELAY_START_BLOCK"]}
    before = json.loads(stack.run_relay_admin(["status"], relay.contract.address, overrides).stdout)
    assert before["lag_blocks"] == before["confirmed_target"] - before["checkpoint_block"] > 0

    relay.wait_caught_up(owner_engine)
    after = json.loads(stack.run_relay_admin(["status"], relay.contract.address, overrides).stdout)
    assert after["lag_blocks"] == 0
    # Every tick logs its lag too (a log-based metric in terraform/monitoring.tf alerts on it).
    ticks = [json.loads(line) for line in (stack.layout.logs / f"relay-{relay.tick_topic}.log").read_text().splitlines()
             if '"relay tick done"' in line]
    assert ticks[-1]["lag_blocks"] == 0

    events_sub = bus.pull_subscription("settlement.events.v1")
    rewind = stack.run_relay_admin(["rewind", "--to", str(created[1].block_number), "--republish"],
                                   relay.contract.address, overrides)
    assert rewind.returncode == 0, rewind.stderr
    assert json.loads(rewind.stdout)["republished"] == 2
    relay.wait_caught_up(owner_engine)
    expected = {f"31337:{c.tx_hash}:0" for c in created[2:]}
    resent = {json.loads(m.data)["event_id"] for m in bus.pull(
        events_sub, until=lambda m: expected <= {json.loads(x.data)["event_id"] for x in m}, settle=1.0)}
    assert expected <= resent
    # Downstream dropped the re-sent ids: still one transition per escrow.
    wait_for_equal(lambda: _relayed_and_settled(owner_engine, relay.contract.address), (4, 4, 4, 4), "no duplicates")


def test_one_tick_publishes_everything_it_staged(stack, bus, owner_engine, isolated_relay):
    # More than the 1,000 logs a tick once sent (two drain rounds of 500),
    # and at one tick a minute the outbox grew without bound while the checkpoint raced ahead.
    relay = isolated_relay(RELAY_BLOCK_RANGE="2000")
    count = 1050
    w3, accounts = stack.web3(), stack.web3().eth.accounts
    deadline = w3.eth.get_block("latest")["timestamp"] + 30 * 86400
    sent = [relay.contract.functions.create(accounts[6], 10**9, deadline).transact(
        {"from": accounts[1 + i % 5], "value": 10**15 + i, "gas": 300_000}) for i in range(count)]
    assert w3.eth.wait_for_transaction_receipt(sent[-1], timeout=60)["status"] == 1
    mine(w3, CONFIRMATIONS)
    relay.tick()
    log = stack.layout.logs / f"relay-{relay.tick_topic}.log"
    [done] = wait_for(lambda: [json.loads(line) for line in log.read_text().splitlines()
                               if '"relay tick done"' in line] or None, "the tick to finish", timeout=120)
    assert (done["logs"], done["published"], done["lag_blocks"]) == (count, count, 0)
    with owner_engine.connect() as conn:
        unpublished = conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM relay.outbox WHERE published_at IS NULL AND envelope->'payload'->>'contract' = :c"),
            {"c": relay.contract.address}).scalar()
    assert unpublished == 0
    # Downstream, each exactly once; waiting here also leaves no backlog in settle and assess-margin for
    # the tests that follow.
    wait_for_equal(lambda: _stored(owner_engine, relay.contract.address), (count, count),
                   "settle and assess-margin to store every escrow once", timeout=240)


def _stored(engine, contract: str) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sqlalchemy.text("SELECT count(*) FROM settlement.escrows WHERE contract = :c"),
                             {"c": contract}).scalar(),
                conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.positions WHERE contract = :c"),
                             {"c": contract}).scalar())
