"""Portfolio risk for the query API, read from the risk schema's `portfolios` view."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Connection

TIER_ORDER = ("HEALTHY", "WARNING", "MARGIN_CALL", "LIQUIDATION")
INFINITE = Decimal("Infinity")

_BY_WALLETS = """
SELECT * FROM risk.portfolios WHERE lower(depositor) = ANY(CAST(:wallets AS text[])) ORDER BY depositor
"""


def _ratio(adjusted: Decimal, owed: Decimal) -> Decimal:
    return INFINITE if owed == 0 else (adjusted / owed).quantize(Decimal("1e-8"))


def _text(value: Decimal) -> str:
    """Decimals as strings on the wire; a health factor with nothing owed is "Infinity"."""
    return "Infinity" if value == INFINITE else str(value)


def user_portfolio(conn: Connection, user: dict) -> dict:
    """The user's portfolio: one entry per wallet that has escrows, and the total across them.

    The total's health factor is the sum of risk-adjusted collateral over the sum of obligations (not an
    average of ratios); its tier is the worst tier among the wallets' open positions.
    """
    rows = conn.execute(text(_BY_WALLETS),
                        {"wallets": [w.lower() for w in user["wallet_addresses"]]}).mappings().all()
    wallets = [{
        "wallet": row["depositor"],
        "open_positions": row["open_positions"],
        "unpriced_positions": row["unpriced_positions"],
        "collateral_value_usd": _text(row["collateral_value_usd"]),
        "risk_adjusted_collateral_usd": _text(row["risk_adjusted_collateral_usd"]),
        "obligation_usd": _text(row["obligation_usd"]),
        "health_factor": _text(row["health_factor"]),
        "worst_tier": row["worst_tier"],
    } for row in rows]
    adjusted = sum((row["risk_adjusted_collateral_usd"] for row in rows), Decimal(0))
    owed = sum((row["obligation_usd"] for row in rows), Decimal(0))
    return {
        "user_id": user["user_id"],
        "wallets": wallets,
        "total": {
            "open_positions": sum(row["open_positions"] for row in rows),
            "collateral_value_usd": _text(sum((row["collateral_value_usd"] for row in rows), Decimal(0))),
            "risk_adjusted_collateral_usd": _text(adjusted),
            "obligation_usd": _text(owed),
            "health_factor": _text(_ratio(adjusted, owed)),
            "worst_tier": max((row["worst_tier"] for row in rows), key=TIER_ORDER.index, default="HEALTHY"),
        },
    }
