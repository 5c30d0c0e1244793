"""Health snapshots on change: a price pass records the positions whose tier changed, and counts the rest.

A pass wrote a snapshot of every open position at every price: 304 B a position, 290 MiB a pass at 1M
positions, and most of a pass's time. A price pass now writes a snapshot only where the tier changed
(each of those also has its margin event); a change of an open escrow (created, approved) still writes
its position's snapshot every time, so the snapshots hold every value a position's health was
computed from. What the other positions were assessed at stays recorded and recomputable:

- `risk.applied_prices` gains `positions_assessed` and `tier_changes`: each applied price records how
  many open positions its pass assessed and how many changed tier (NULL on prices applied before this);
- `risk.position_health` is each open position's health factor at its asset's current price and its
  tier, computed when read (as `risk.portfolios` values wallets), for the api, the operator and tests.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_PASS_COUNTS = ("positions_assessed integer", "tier_changes integer")


def upgrade() -> None:
    for column in _PASS_COUNTS:
        op.execute(f"ALTER TABLE risk.applied_prices ADD COLUMN {column}")
    op.execute("""
        CREATE VIEW risk.position_health AS
        SELECT p.chain_id, p.contract, p.escrow_id, p.depositor, p.asset_symbol, p.collateral_amount,
               p.obligation_usd, ap.price, ap.price_event_id,
               risk.health_factor(p.collateral_amount * ap.price * p.liquidation_threshold,
                                  p.obligation_usd) AS health_factor,
               risk.tier_named(risk.tier_rank(p.tier)) AS tier
        FROM risk.positions p JOIN risk.asset_prices ap ON ap.asset_symbol = p.asset_symbol
        WHERE p.is_open
    """)
    op.execute("GRANT SELECT ON risk.position_health TO fn_api")


def downgrade() -> None:
    op.execute("DROP VIEW risk.position_health")
    for column in _PASS_COUNTS:
        op.execute(f"ALTER TABLE risk.applied_prices DROP COLUMN {column.split()[0]}")
