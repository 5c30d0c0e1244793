"""Portfolio risk for the query API, read from the risk schema's `portfolios` view; the total across a
user's wallets follows the same rules (shared/risk/tiers.py)."""

from __future__ import annotations

from decimal import Decimal

from shared.db import Connection, sql
from shared.risk.tiers import INFINITE, health_factor, worst

_BY_WALLETS = """
SELECT * FROM risk.portfolios WHERE lower(depositor) = ANY(CAST(:wallets AS text[])) ORDER BY depositor
"""


def _text(value: Decimal) -> str:
    """Decimals as strings on the wire; a health factor with nothing owed is "Infinity"."""
    return "Infinity" if value == INFINITE else str(value)


def user_portfolio(conn: Connection, user: dict) -> dict:
    """The user's portfolio: one entry per wallet that has escrows, and the total across them.

    The total's health factor is the sum of risk-adjusted collateral over the sum of obligations (not an
    average of ratios); its tier is the worst tier among the wallets' open positions.
    """
    rows = conn.execute(sql(_BY_WALLETS),
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
            "health_factor": _text(health_factor(adjusted, owed)),
            "worst_tier": worst(row["worst_tier"] for row in rows),
        },
    }
