"""The reconciler's settlement -> risk comparison, on PostgreSQL: which escrows it reports, and that it
reports nothing for a consistent one.

The database compares and returns only the escrows that differ (a million consistent escrows read into the
run took it to 1.7 GiB, past its 512 MiB). One row per way the projection can drift, each on an escrow of
its own, next to consistent escrows of every asset kind: an 18-decimal token, a 6-decimal one, and a token
risk does not know (its collateral is kept unscaled).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import sqlalchemy

from shared.reconcile.service import MAX_DRIFTS_PER_KIND, RISK_DIFFERS, RISK_MISSING
from tests.support.database import engine_as
from tests.support.reconcile import ETH_TOKEN, USDC_TOKEN, reconciler_on

UNKNOWN_TOKEN = "0x00000000000000000000000000000000DeaDBeef"
# The consistent escrows: (asset token, amount on chain, risk's symbol, risk's collateral).
CONSISTENT = [
    (ETH_TOKEN, 1_500_000_000_000_000_000, "ETH", Decimal("1.5")),
    (ETH_TOKEN, 1, "ETH", Decimal("0.000000000000000001")),
    (USDC_TOKEN, 2_500_000, "USDC", Decimal("2.5")),
    (UNKNOWN_TOKEN, 7, None, Decimal(7)),
]
ETH = 10**18


def _seed(conn, contract: str, escrow_id: int, asset: str, amount: int, symbol: str | None, collateral: Decimal,
          *, recorded_seconds_ago: int = 3600, position: bool = True) -> None:
    row = {"c": contract, "i": escrow_id, "asset": asset, "amount": amount, "symbol": symbol,
           "collateral": collateral, "ago": recorded_seconds_ago}
    conn.execute(sqlalchemy.text(
        "INSERT INTO settlement.escrows (chain_id, contract, escrow_id, depositor, beneficiary, asset, amount, "
        "obligation_usd, deadline, state, sequence, last_block, last_log_index, created_event_id, created_block, "
        "created_tx, created_at, updated_at, recorded_at) VALUES (31337, :c, :i, '0x' || repeat('a', 40), "
        "'0x' || repeat('b', 40), :asset, :amount, 1000, now() + interval '30 days', 'approved', 2, 10, 0, "
        ":c || ':' || :i, 9, 'tx', now(), now(), now() - make_interval(secs => :ago))"), row)
    if position:
        conn.execute(sqlalchemy.text(
            "INSERT INTO risk.positions (chain_id, contract, escrow_id, depositor, asset_token, asset_symbol, "
            "collateral_amount, obligation_usd, liquidation_threshold, state, is_open, sequence, correlation_id) "
            "VALUES (31337, :c, :i, '0x' || repeat('a', 40), :asset, :symbol, :collateral, 1000, 0.825, "
            "'approved', true, 2, :c || ':' || :i)"), row)


@pytest.fixture
def contract(owner_engine):
    """A contract key of the test's own, its rows removed afterwards."""
    key = f"0xcompare{uuid.uuid4().hex[:12]}"
    yield key
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM risk.positions WHERE contract = :c"), {"c": key})
        conn.execute(sqlalchemy.text("DELETE FROM settlement.escrows WHERE contract = :c"), {"c": key})


def _drifts(database, contract: str) -> dict:
    """key -> drift, for the test's contract, as the reconciler (fn_reconcile) finds them."""
    with engine_as(database, "fn_reconcile") as engine:
        found = reconciler_on(database).settlement_vs_risk(engine, {})
    return {drift.key: drift for drift in found if f":{contract}:" in drift.key}


# How a projection drifts: (the change to risk's row, or None to delete it), kind, the replica's field that shows it.
DRIFTS = [
    (None, RISK_MISSING, None),
    ("state = 'completed'", RISK_DIFFERS, ("state", "completed")),
    ("sequence = 1", RISK_DIFFERS, ("sequence", 1)),
    ("depositor = '0x' || repeat('c', 40)", RISK_DIFFERS, ("depositor", "0x" + "c" * 40)),
    ("depositor = '0x' || repeat('A', 40)", RISK_DIFFERS, ("depositor", "0x" + "A" * 40)),  # no spelling variant
    ("collateral_amount = 1.500000000000000001", RISK_DIFFERS, ("amount", str(15 * ETH // 10 + 1))),
    ("collateral_amount = 15", RISK_DIFFERS, ("amount", str(15 * ETH))),
    ("obligation_usd = 1000.00000001", RISK_DIFFERS, ("obligation_usd", "1000.00000001")),
]


@pytest.mark.parametrize("change, kind, shown", DRIFTS,
                         ids=[kind if change is None else change for change, kind, _ in DRIFTS])
def test_each_way_a_projection_drifts_is_reported_and_consistent_escrows_are_not(
        database, owner_engine, contract, change, kind, shown):
    with owner_engine.begin() as conn:
        for escrow_id, (asset, amount, symbol, collateral) in enumerate(CONSISTENT, start=1):
            _seed(conn, contract, escrow_id, asset, amount, symbol, collateral)
        _seed(conn, contract, 100, ETH_TOKEN, 15 * ETH // 10, "ETH", Decimal("1.5"))
        where = {"c": contract, "i": 100}
        if change is None:
            conn.execute(sqlalchemy.text("DELETE FROM risk.positions WHERE contract = :c AND escrow_id = :i"), where)
        else:
            conn.execute(sqlalchemy.text(f"UPDATE risk.positions SET {change} WHERE contract = :c AND escrow_id = :i"),
                         where)

    drifts = _drifts(database, contract)

    assert list(drifts) == [f"31337:{contract}:100"]
    drift = drifts[f"31337:{contract}:100"]
    assert drift.kind == kind
    assert drift.source == {"state": "approved", "sequence": 2, "depositor": "0x" + "a" * 40,
                            "amount": str(15 * ETH // 10), "obligation_usd": "1000.00000000"}
    if shown is None:
        assert drift.replica is None
    else:
        field, value = shown
        assert drift.replica[field] == value
        assert {name: v for name, v in drift.replica.items() if name != field} == {
            name: v for name, v in drift.source.items() if name != field}
    assert drift.repair is not None


def test_escrows_inside_the_grace_period_are_left_alone(database, owner_engine, contract):
    """Settled a moment ago: risk may not have applied it yet."""
    with owner_engine.begin() as conn:
        _seed(conn, contract, 1, ETH_TOKEN, ETH, "ETH", Decimal(1), recorded_seconds_ago=1, position=False)
        _seed(conn, contract, 2, ETH_TOKEN, ETH, "ETH", Decimal(1), position=False)

    assert list(_drifts(database, contract)) == [f"31337:{contract}:2"]


def test_a_run_reports_at_most_its_limit_in_key_order_and_counts_every_settled_escrow(
        database, owner_engine, contract):
    count = MAX_DRIFTS_PER_KIND + 5
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text(
            "INSERT INTO settlement.escrows (chain_id, contract, escrow_id, depositor, beneficiary, asset, amount, "
            "obligation_usd, deadline, state, sequence, last_block, last_log_index, created_event_id, created_block, "
            "created_tx, created_at, updated_at, recorded_at) SELECT 31337, :c, i, '0x' || repeat('a', 40), "
            "'0x' || repeat('b', 40), :asset, 1, 1, now(), 'created', 1, i, 0, :c || i, i, 'tx', now(), now(), "
            "now() - interval '1 hour' FROM generate_series(1, :n) AS i"),
            {"c": contract, "asset": ETH_TOKEN, "n": count})
    checked: dict = {}
    with engine_as(database, "fn_reconcile") as engine:
        found = reconciler_on(database).settlement_vs_risk(engine, checked)

    assert len(found) == MAX_DRIFTS_PER_KIND
    ours = [drift.key for drift in found if f":{contract}:" in drift.key]
    assert ours == sorted(ours, key=lambda key: int(key.rsplit(":", 1)[1]))
    assert checked["settled escrows"] >= count
