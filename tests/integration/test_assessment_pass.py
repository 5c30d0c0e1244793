"""assess-margin's handler straight on PostgreSQL (no emulator, no running function): the tiers an
escrow moves through as its asset's price moves, with the hysteresis, the margin events and the
messages they publish, and the portfolios view, all following shared/risk/tiers.py. Each test runs in one
transaction that it rolls back, with an asset of its own, so it leaves nothing behind."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
import sqlalchemy

from shared.addresses import checksum_address
from shared.envelope import Envelope
from shared.events import ESCROW_STATE_CHANGED, PRICE_UPDATED, MarginTierChangedV1
from shared.risk import margin_events
from shared.risk.service import RiskEngine
from shared.risk.settings import RiskSettings
from shared.risk.tiers import health_factor
from shared.settings import Settings
from tests.support.database import OnSqlAlchemy

TOKEN = checksum_address("0x" + "7e" * 20)
ASSET = {"symbol": "TST", "token": TOKEN, "decimals": 18, "coingecko_id": "test",
         "chainlink_aggregator": "0x" + "11" * 20, "heartbeat_seconds": 3600, "deviation_threshold": "0.005",
         "liquidation_threshold": "0.8"}
ENV = {"SERVICE_NAME": "assess-margin", "GCP_PROJECT": "p", "DB_NAME": "escrow", "DB_USER": "fn_assess_margin",
       "DB_HOST": "127.0.0.1", "DB_PORT": "1", "PRICE_ASSETS": json.dumps([ASSET]),
       "RISK_TIER_THRESHOLDS": "WARNING=1.5,MARGIN_CALL=1.2,LIQUIDATION=1.0", "RISK_HYSTERESIS": "0.05"}
OBLIGATION = Decimal(50)  # one TST of collateral at 0.8: health factor = price x 0.8 / 50


def _envelope(event_type: str, payload: dict) -> Envelope:
    return Envelope(event_id=f"{event_type}:{uuid.uuid4().hex}", event_type=event_type, schema_version=1,
                    occurred_at="2026-12-02T00:00:00+00:00", correlation_id="assessment-pass-test",
                    causation_id=None, payload=payload)


def _price(price: str, sequence: int) -> Envelope:
    return _envelope(PRICE_UPDATED, {
        "asset": "TST", "token": TOKEN, "price": price, "sequence": sequence,
        "observed_at": "2026-12-02T00:00:00+00:00", "reason": "test",
        "sources": [{"source": "chainlink", "price": price, "round_id": str(sequence),
                     "updated_at": "2026-12-02T00:00:00+00:00", "age_seconds": 0.0}]})


def _escrow(depositor: str) -> Envelope:
    return _envelope(ESCROW_STATE_CHANGED, {
        "chain_id": 31337, "contract": "0x" + "ab" * 20, "escrow_id": "1", "depositor": depositor,
        "beneficiary": "0x" + "cd" * 20, "asset": TOKEN, "amount": str(10**18), "obligation_usd": f"{OBLIGATION:.8f}",
        "deadline": 1893456000, "state": "created", "previous_state": None, "sequence": 1, "reverted": False,
        "block_number": 1, "log_index": 0})


@pytest.fixture
def conn(owner_engine):
    with owner_engine.connect() as connection:
        transaction = connection.begin()
        yield OnSqlAlchemy(connection)
        transaction.rollback()


def test_a_position_moves_through_the_tiers_with_hysteresis(conn):
    engine = RiskEngine(Settings.from_env(ENV, parts=[RiskSettings]).part(RiskSettings))
    depositor = checksum_address("0x" + uuid.uuid4().hex + "00000000")
    engine.handle(conn, _price("100", 1))
    engine.handle(conn, _escrow(depositor))  # 100 x 0.8 / 50 = 1.6: healthy
    # (price, its health factor, the tier after it)
    walk = [("90", "1.44", "WARNING"),       # below 1.5: worse at once
            ("94", "1.504", "WARNING"),      # above 1.5 but within the 0.05 hysteresis: stays
            ("97", "1.552", "HEALTHY"),      # 0.05 above: recovers
            ("70", "1.12", "MARGIN_CALL"),
            ("60", "0.96", "LIQUIDATION"),
            ("63", "1.008", "LIQUIDATION"),  # above 1.0, within the hysteresis
            ("66", "1.056", "MARGIN_CALL")]  # better by one tier only
    for sequence, (price, expected_hf, expected_tier) in enumerate(walk, start=2):
        update = _price(price, sequence)
        engine.handle(conn, update)
        health = conn.execute(sqlalchemy.text(
            "SELECT health_factor, tier FROM risk.position_health WHERE depositor = :d"), {"d": depositor}).one()
        assert (health.health_factor, health.tier) == (Decimal(expected_hf), expected_tier), price
        applied = conn.execute(sqlalchemy.text(
            "SELECT positions_assessed, tier_changes FROM risk.applied_prices WHERE price_event_id = :e"),
            {"e": update.event_id}).one()
        assert tuple(applied) == (1, 0 if expected_hf in ("1.504", "1.008") else 1), price

    # Each assessment recorded once: the escrow's creation as a snapshot, then each tier change as its
    # margin event alone, each with the values its health factor was computed from.
    history = conn.execute(sqlalchemy.text(
        "SELECT previous_tier, tier, health_factor, price, collateral_amount, obligation_usd, snapshot_id, "
        "margin_event_id FROM risk.position_history WHERE depositor = :d ORDER BY recorded_at"),
        {"d": depositor}).all()
    assert [(h.previous_tier or "HEALTHY", h.tier, h.health_factor) for h in history] == [
        ("HEALTHY", "HEALTHY", Decimal("1.6"))] + [
        (before, after, Decimal(hf)) for (_, _, before), (_, hf, after) in zip(
            [("100", "1.6", "HEALTHY"), *walk], walk, strict=False) if before != after]
    assert all(h.health_factor == health_factor(h.collateral_amount * h.price * Decimal("0.8"), h.obligation_usd)
               for h in history)
    assert history[0].snapshot_id is not None and history[0].margin_event_id is None
    assert all(h.snapshot_id is None and h.margin_event_id for h in history[1:])
    assert conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.margin_health_snapshots WHERE depositor = :d"),
                        {"d": depositor}).scalar_one() == 1

    events = conn.execute(sqlalchemy.text(
        "SELECT previous_tier, tier, event_id FROM risk.margin_events WHERE depositor = :d ORDER BY occurred_at"),
        {"d": depositor}).all()
    assert [e.event_id for e in events] == [h.margin_event_id for h in history[1:]]
    assert [(e.previous_tier, e.tier) for e in events] == [
        ("HEALTHY", "WARNING"), ("WARNING", "HEALTHY"), ("HEALTHY", "MARGIN_CALL"),
        ("MARGIN_CALL", "LIQUIDATION"), ("LIQUIDATION", "MARGIN_CALL")]
    # Each event is its own outbox row, published after the commit; its message says what the row says.
    rows = conn.execute(sqlalchemy.text(
        f"SELECT {margin_events.MESSAGE_COLUMNS}, m.published_at FROM risk.margin_events m WHERE m.depositor = :d "
        "ORDER BY m.occurred_at"), {"d": depositor}).all()
    assert [row.published_at for row in rows] == [None] * len(events)
    messages = [Envelope.from_bytes(margin_events.message(row).data).typed(MarginTierChangedV1) for row in rows]
    assert [m.snapshot_id for m in messages] == [None] * len(events)
    assert [(m.previous_tier, m.tier, m.depositor, m.asset) for m in messages] == \
        [(e.previous_tier, e.tier, depositor, "TST") for e in events]
    assert [Decimal(m.health_factor) for m in messages] == \
        [Decimal(hf) for _, hf, _ in walk if hf not in ("1.504", "1.008")]
    assert not conn.execute(sqlalchemy.text("SELECT 1 FROM risk.outbox WHERE event_id = ANY(:ids)"),
                            {"ids": [e.event_id for e in events]}).all()

    portfolio = conn.execute(sqlalchemy.text(
        "SELECT health_factor, worst_tier FROM risk.portfolios WHERE depositor = :d"), {"d": depositor}).one()
    assert portfolio.worst_tier == "MARGIN_CALL"
    assert portfolio.health_factor == health_factor(Decimal(66) * Decimal("0.8"), OBLIGATION)


def test_an_escrow_change_that_moves_the_tier_is_snapshotted_and_its_event_names_the_snapshot(conn):
    engine = RiskEngine(Settings.from_env(ENV, parts=[RiskSettings]).part(RiskSettings))
    depositor = checksum_address("0x" + uuid.uuid4().hex + "00000000")
    engine.handle(conn, _price("90", 1))
    engine.handle(conn, _escrow(depositor))  # created at 90 x 0.8 / 50 = 1.44: WARNING from the start
    [snapshot] = conn.execute(sqlalchemy.text(
        "SELECT id, previous_tier, tier FROM risk.margin_health_snapshots WHERE depositor = :d"),
        {"d": depositor}).all()
    [event] = conn.execute(sqlalchemy.text(
        f"SELECT {margin_events.MESSAGE_COLUMNS} FROM risk.margin_events m WHERE m.depositor = :d"),
        {"d": depositor}).all()
    assert (snapshot.previous_tier, snapshot.tier) == (None, "WARNING")
    assert (event.previous_tier, event.tier, event.snapshot_id) == ("HEALTHY", "WARNING", snapshot.id)
    assert Envelope.from_bytes(margin_events.message(event).data).typed(MarginTierChangedV1).snapshot_id == snapshot.id
    # Recorded once in the history: by its snapshot (the event that names it is not listed again).
    history = conn.execute(sqlalchemy.text(
        "SELECT snapshot_id, margin_event_id, tier FROM risk.position_history WHERE depositor = :d"),
        {"d": depositor}).all()
    assert [tuple(h) for h in history] == [(snapshot.id, None, "WARNING")]


def _positions(conn, count: int, contracts: list[str]) -> None:
    """`count` open TST positions per contract, escrow ids 1..count, collateral rising with the id."""
    for contract in contracts:
        conn.execute(sqlalchemy.text(
            "INSERT INTO risk.positions (chain_id, contract, escrow_id, depositor, asset_token, asset_symbol, "
            "collateral_amount, obligation_usd, liquidation_threshold, state, is_open, sequence, correlation_id) "
            "SELECT 31337, :c, n, :d, :t, 'TST', n, :o, 0.8, 'created', true, 1, 'chunk-test' "
            "FROM generate_series(1, :count) AS n"),
            {"c": contract, "d": "0x" + "de" * 20, "t": TOKEN, "o": OBLIGATION, "count": count})


def _pass_outcome(conn, monkeypatch, chunk: int) -> tuple:
    from shared.risk import assessment

    monkeypatch.setattr(assessment, "PASS_CHUNK_POSITIONS", chunk)
    engine = RiskEngine(Settings.from_env(ENV, parts=[RiskSettings]).part(RiskSettings))
    price = _price("10", 10**9 + chunk)  # health factor of escrow n: n x 10 x 0.8 / 50 = 0.16 n
    engine.handle(conn, price)
    tiers = conn.execute(sqlalchemy.text(
        "SELECT contract, escrow_id, tier FROM risk.position_health WHERE asset_symbol = 'TST' "
        "ORDER BY contract, escrow_id")).all()
    history = conn.execute(sqlalchemy.text(
        "SELECT contract, escrow_id, tier FROM risk.position_history WHERE cause_event_id = :e "
        "ORDER BY contract, escrow_id"), {"e": price.event_id}).all()
    assert not conn.execute(sqlalchemy.text(
        "SELECT 1 FROM risk.margin_health_snapshots WHERE cause_event_id = :e"), {"e": price.event_id}).all()
    events = conn.execute(sqlalchemy.text(
        "SELECT contract, escrow_id, tier FROM risk.margin_events WHERE cause_event_id = :e "
        "ORDER BY contract, escrow_id"), {"e": price.event_id}).all()
    assessed = conn.execute(sqlalchemy.text(
        "SELECT positions_assessed FROM risk.applied_prices WHERE price_event_id = :e"),
        {"e": price.event_id}).scalar_one()
    return [tuple(row) for row in tiers], [tuple(row) for row in history], [tuple(row) for row in events], assessed


@pytest.mark.parametrize("chunk", [1, 7, 23, 24, 1000])
def test_a_pass_in_chunks_assesses_every_position_once_as_one_pass_would(conn, monkeypatch, chunk):
    # 24 positions over two contracts: chunks that split a contract, end exactly on the last key, or cover all.
    contracts = ["0x" + "a1" * 20, "0x" + "b2" * 20]
    _positions(conn, 12, contracts)
    savepoint = conn.begin_nested()
    whole = _pass_outcome(conn, monkeypatch, 1000)
    savepoint.rollback()
    chunked = _pass_outcome(conn, monkeypatch, chunk)
    tiers, history, events, assessed = chunked
    assert chunked == whole
    assert len(tiers) == 24 == assessed
    # Per contract: escrows 1-6 LIQUIDATION (below 1.0), 7 MARGIN_CALL (1.12), 8-9 WARNING, 10-12 HEALTHY;
    # each that left HEALTHY has its one margin event (its record in the history, no snapshot), the others none.
    assert [tier for contract, _id, tier in tiers if contract == contracts[0]] == \
        ["LIQUIDATION"] * 6 + ["MARGIN_CALL"] + ["WARNING"] * 2 + ["HEALTHY"] * 3
    assert events == history == [row for row in tiers if row[2] != "HEALTHY"] and len(events) == 18
