"""Portfolio risk per depositor wallet: stored exposures, valued at current prices when read.

A price update must not rewrite every depositor's portfolio: it would double the cost of the risk pass
(10k portfolios for 100k positions). What does not depend on the price is stored per depositor and
asset, and refreshed only when one of the depositor's escrows changes:

    risk.portfolio_exposures   open positions, collateral amount, collateral x liquidation threshold,
                               obligation
    risk.portfolios (view)     those exposures x the current price of each asset: collateral value,
                               risk-adjusted collateral, obligation, the aggregate health factor
                               (sum of risk-adjusted collateral / sum of obligations), and the worst
                               tier among the depositor's open positions (tiers carry hysteresis)
"""

from __future__ import annotations

from datetime import datetime

from shared.db import Connection, sql
from shared.risk import SCHEMA

# Two escrows of one depositor may be applied concurrently; their refreshes take turns.
_LOCK = sql("SELECT pg_advisory_xact_lock(hashtext('risk.portfolio_exposures'), hashtext(:depositor))")
_CLEAR = sql(f"DELETE FROM {SCHEMA}.portfolio_exposures WHERE depositor = :depositor")
_REFRESH = sql(f"""
INSERT INTO {SCHEMA}.portfolio_exposures
    (depositor, asset_symbol, open_positions, collateral_amount, risk_adjusted_amount, obligation_usd, updated_at)
SELECT p.depositor, p.asset_symbol, count(*), sum(p.collateral_amount),
       sum(p.collateral_amount * p.liquidation_threshold), sum(p.obligation_usd), :now
FROM {SCHEMA}.positions p
WHERE p.depositor = :depositor AND p.is_open AND p.asset_symbol IS NOT NULL
GROUP BY p.depositor, p.asset_symbol
""")


def refresh_exposures(conn: Connection, depositor: str, now: datetime) -> None:
    """Recompute one depositor's stored exposures from its open positions (two statements: a
    data-modifying CTE's DELETE is not visible to an INSERT in the same statement)."""
    conn.execute(_LOCK, {"depositor": depositor})
    conn.execute(_CLEAR, {"depositor": depositor})
    conn.execute(_REFRESH, {"depositor": depositor, "now": now})
