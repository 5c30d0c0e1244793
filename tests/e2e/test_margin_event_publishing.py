"""Margin events are their own outbox (shared/risk/margin_events.py): each unpublished event goes out once,
with the envelope its row describes, and is marked with its message id; two publishers at once never send
one twice; a refused publish leaves the events pending; a crash over thousands of positions, applied by
the running assess-margin, gets every alert out and to notify. On the real emulator and PostgreSQL.

The events are recorded by hand (as a pass records them), or the positions seeded by hand, for depositors
no user has, so notify, which also receives them, has nobody to alert."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy

from shared import topics
from shared.addresses import checksum_address
from shared.db import get_engine
from shared.envelope import Envelope
from shared.errors import PublishFailed
from shared.events import MarginTierChangedV1
from shared.risk import margin_events
from shared.settings import DatabaseSettings
from shared.stack.chain_driver import wait_for
from shared.stack.layout import PROJECT_ID


@pytest.fixture
def engine(stack):
    settings = DatabaseSettings(name="escrow", user="fn_assess_margin", host="127.0.0.1",
                                port=stack.layout.postgres_port, instance_connection_name=None)
    return get_engine(settings)


def _record(owner_engine, count: int) -> list[str]:
    """`count` unpublished margin events, as a crash pass records them; their ids in snapshot order."""
    run = uuid.uuid4().hex
    with owner_engine.begin() as conn:
        return list(conn.execute(sqlalchemy.text(
            "INSERT INTO risk.margin_events (event_id, chain_id, contract, escrow_id, depositor, previous_tier, tier, "
            "health_factor, price, snapshot_id, correlation_id, cause_event_id, occurred_at, asset_symbol, "
            "collateral_amount, obligation_usd, price_event_id) "
            "SELECT 'MarginTierChanged:' || :run || ':' || n, 31337, :contract, n, :depositor, 'HEALTHY', "
            "'MARGIN_CALL', 1.15000000, 1700, nextval('risk.margin_health_snapshots_id_seq'), 'probe:' || :run, "
            "'PriceUpdated:ETH:probe-' || :run, now(), 'ETH', 1.5, 1900.00000000, 'PriceUpdated:ETH:probe-' || :run "
            "FROM generate_series(1, :count) AS n ORDER BY n RETURNING event_id"),
            {"run": run, "count": count, "contract": checksum_address("0x" + run[:8] * 5),
             "depositor": checksum_address("0x" + run[8:16] * 5)}).scalars())


def _rows(owner_engine, event_ids: list[str]) -> dict:
    with owner_engine.connect() as conn:
        return {row.event_id: row for row in conn.execute(sqlalchemy.text(
            f"SELECT {margin_events.MESSAGE_COLUMNS}, m.published_at, m.message_id FROM risk.margin_events m "
            "WHERE m.event_id = ANY(:ids)"), {"ids": event_ids})}


def test_each_event_goes_out_once_with_its_envelope_and_is_marked(engine, bus, owner_engine):
    subscription = bus.pull_subscription(topics.MARGIN_EVENTS)
    event_ids = _record(owner_engine, 3)
    margin_events.drain(engine, PROJECT_ID, 30, 0)
    rows = _rows(owner_engine, event_ids)
    received = bus.pull(subscription, until=lambda got: {json.loads(m.data)["event_id"] for m in got} >= set(event_ids),
                        settle=1.0)
    ours = [m for m in received if json.loads(m.data)["event_id"] in rows]
    assert sorted(json.loads(m.data)["event_id"] for m in ours) == sorted(event_ids)
    for sent in ours:
        row = rows[json.loads(sent.data)["event_id"]]
        assert row.published_at is not None and sent.message_id == row.message_id
        # The bytes a republish (the reconciler's) would send, and a valid MarginTierChanged.
        assert sent.data == margin_events.message(row).data
        envelope = Envelope.from_bytes(sent.data)
        payload = envelope.typed(MarginTierChangedV1)
        assert (payload.tier, payload.previous_tier, payload.snapshot_id) == ("MARGIN_CALL", "HEALTHY", row.snapshot_id)
        assert str(payload.health_factor) == "1.15000000" and payload.price_event_id == row.price_event_id
        assert dict(sent.attributes) == {**envelope.attributes(), "tier": "MARGIN_CALL"}
    # Marked: another round leaves them alone.
    margin_events.drain(engine, PROJECT_ID, 30, 0)
    assert {k: r.message_id for k, r in _rows(owner_engine, event_ids).items()} == \
        {k: r.message_id for k, r in rows.items()}
    assert not [m for m in bus.pull(subscription, timeout=2) if json.loads(m.data)["event_id"] in rows]


def test_two_publishers_at_once_send_each_event_once(engine, bus, owner_engine):
    subscription = bus.pull_subscription(topics.MARGIN_EVENTS)
    event_ids = _record(owner_engine, 1200)
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda _: margin_events.drain(engine, PROJECT_ID, 30, 0), range(2)))
    assert sum(sent) >= len(event_ids)  # (the stack's assess-margin may publish events of its own meanwhile)
    received = bus.pull(subscription, until=lambda got: len(got) >= len(event_ids), timeout=60, settle=2.0)
    ours = [json.loads(m.data)["event_id"] for m in received if json.loads(m.data)["event_id"] in set(event_ids)]
    assert sorted(ours) == sorted(event_ids)  # each once
    assert all(row.published_at is not None for row in _rows(owner_engine, event_ids).values())


def test_a_refused_publish_leaves_the_events_pending(engine, bus, owner_engine):
    event_ids = _record(owner_engine, 2)
    with pytest.raises(PublishFailed):  # no such project: the emulator answers NOT_FOUND
        margin_events.publish_round(engine, f"no-project-{uuid.uuid4().hex[:6]}", 5)
    assert all(row.published_at is None for row in _rows(owner_engine, event_ids).values())
    margin_events.drain(engine, PROJECT_ID, 30, 0)
    assert all(row.message_id for row in _rows(owner_engine, event_ids).values())


CRASH_POSITIONS = 5_000  # more than one publishing round (margin_events.PUBLISH_ROUND)


def test_a_crash_gets_every_alert_out_and_to_notify(market, owner_engine):
    contract = checksum_address("0x" + uuid.uuid4().hex[:8] * 5)
    # Healthy at 2000 (1 ETH against 1000 USD: 1.65), a margin call at 1400 (1.155).
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text(
            "INSERT INTO risk.positions (chain_id, contract, escrow_id, depositor, asset_token, asset_symbol, "
            "collateral_amount, obligation_usd, liquidation_threshold, state, is_open, sequence, correlation_id) "
            "SELECT 31337, :c, n, '0x' || lpad(to_hex(n), 40, '0'), '0x' || repeat('0', 40), 'ETH', 1, 1000, 0.825, "
            "'created', true, 1, 'crash-probe:' || n FROM generate_series(1, :n) AS n"),
            {"c": contract, "n": CRASH_POSITIONS})
    assert margin_events.PUBLISH_ROUND < CRASH_POSITIONS
    try:
        market.settle_at("1400")
        applied = time.monotonic()

        def ours(sql: str) -> int:
            with owner_engine.connect() as conn:
                return conn.execute(sqlalchemy.text(sql), {"c": contract}).scalar()

        assert ours("SELECT count(*) FROM risk.margin_events WHERE contract = :c AND tier = 'MARGIN_CALL'") == \
            CRASH_POSITIONS
        wait_for(lambda: ours("SELECT count(*) FROM risk.margin_events WHERE contract = :c "
                              "AND published_at IS NOT NULL") == CRASH_POSITIONS, "every margin event published",
                 timeout=60)
        published_within = time.monotonic() - applied
        assert ours("SELECT count(DISTINCT message_id) FROM risk.margin_events WHERE contract = :c") == CRASH_POSITIONS
        wait_for(lambda: ours("SELECT count(*) FROM notify.inbox i JOIN risk.margin_events m ON m.event_id = "
                              "i.dedupe_key WHERE i.consumer = 'notify' AND m.contract = :c") == CRASH_POSITIONS,
                 "notify to receive every alert", timeout=120)
        print(f"{CRASH_POSITIONS} alerts published {published_within:.1f}s after the price was applied")
    finally:
        with owner_engine.begin() as conn:  # out of every later pass on this stack
            conn.execute(sqlalchemy.text("UPDATE risk.positions SET is_open = false WHERE contract = :c"),
                         {"c": contract})
