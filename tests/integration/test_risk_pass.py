"""The risk pass's SQL on edge cases, run directly in PostgreSQL (as fn_assess_margin would)."""

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy

from shared.risk.assessment import ALL_OPEN_ON_ASSET, assess
from shared.risk.settings import RiskSettings
from shared.settings import Settings
from tests.support.database import OnSqlAlchemy

CONTRACT = "0x00000000000000000000000000000000000c0DE5"


def _policy(stack):
    return Settings.from_env({
        "SERVICE_NAME": "t", "GCP_PROJECT": "p", "DB_NAME": "d", "DB_USER": "u", "DB_HOST": "h", "DB_PORT": "1",
        "PRICE_ASSETS": stack.price_assets()}, parts=[RiskSettings]).part(RiskSettings)


def test_nothing_owed_is_an_infinite_health_factor_and_healthy(stack, owner_engine):
    # In a transaction rolled back at the end: the stack's data is left as it was.
    with owner_engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(sqlalchemy.text(
                "INSERT INTO risk.positions (chain_id, contract, escrow_id, depositor, asset_token, asset_symbol, "
                "collateral_amount, obligation_usd, liquidation_threshold, state, is_open, sequence, correlation_id) "
                "VALUES (31337, :c, 1, :d, :t, 'ETH', 2, 0, 0.825, 'created', true, 1, 'test'), "
                "       (31337, :c, 2, :d, :t, 'ETH', 1, 4000, 0.825, 'created', true, 1, 'test')"),
                {"c": CONTRACT, "d": "0x" + "ab" * 20, "t": "0x" + "00" * 20})
            conn.execute(sqlalchemy.text(
                "INSERT INTO risk.asset_prices (asset_symbol, price, sequence, price_event_id, observed_at) "
                "VALUES ('ETH', 2000, 1000000, 'test-price', now()) ON CONFLICT (asset_symbol) DO UPDATE "
                "SET price = 2000, price_event_id = 'test-price'"))
            result = assess(OnSqlAlchemy(conn), _policy(stack), ALL_OPEN_ON_ASSET, {"asset": "ETH"},
                            cause_event_id="test-price", now=datetime.now(UTC))
            rows = conn.execute(sqlalchemy.text(
                "SELECT escrow_id, health_factor, tier FROM risk.position_health "
                "WHERE contract = :c ORDER BY escrow_id"), {"c": CONTRACT}).all()
            history = conn.execute(sqlalchemy.text(
                "SELECT escrow_id, health_factor, tier, snapshot_id FROM risk.position_history "
                "WHERE contract = :c AND cause_event_id = 'test-price' ORDER BY escrow_id"), {"c": CONTRACT}).all()
            events = conn.execute(sqlalchemy.text(
                "SELECT escrow_id, tier FROM risk.margin_events WHERE contract = :c"), {"c": CONTRACT}).all()
        finally:
            transaction.rollback()
    assert result.assessed >= 2
    assert [(int(r.escrow_id), r.health_factor, r.tier) for r in rows] == [
        (1, Decimal("Infinity"), "HEALTHY"),
        (2, Decimal("0.41250000"), "LIQUIDATION"),  # 1 x 2000 x 0.825 / 4000
    ]
    assert [(int(e.escrow_id), e.tier) for e in events] == [(2, "LIQUIDATION")]
    # The price pass records the tier change only, by its margin event: no snapshot.
    assert [tuple(h) for h in history] == [(*r, None) for r in rows[1:]]
