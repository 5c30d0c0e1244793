"""The tier and health-factor rules as SQL functions, so the assessment pass and the portfolios view
share them with the Python code (shared/risk/tiers.py holds the rules; a test compares these bodies
with it, so a change there comes with a migration like this one).

The view's worst tier and health factor now call the functions; its columns are unchanged.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "CREATE OR REPLACE FUNCTION risk.tier_rank(tier text) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "AS $$ SELECT CASE coalesce(tier, 'HEALTHY') WHEN 'LIQUIDATION' THEN 3 WHEN 'MARGIN_CALL' THEN 2 "
    "WHEN 'WARNING' THEN 1 ELSE 0 END $$",
    "CREATE OR REPLACE FUNCTION risk.tier_named(rank_value integer) RETURNS text LANGUAGE sql IMMUTABLE "
    "PARALLEL SAFE AS $$ SELECT (ARRAY['HEALTHY', 'WARNING', 'MARGIN_CALL', 'LIQUIDATION'])[1 + rank_value] $$",
    "CREATE OR REPLACE FUNCTION risk.health_factor(adjusted_collateral numeric, obligation numeric) "
    "RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT CASE WHEN obligation = 0 "
    "THEN 'Infinity'::numeric ELSE round(adjusted_collateral / obligation, 8) END $$",
)

PORTFOLIOS = """
    CREATE OR REPLACE VIEW risk.portfolios AS
    SELECT x.depositor, x.open_positions, x.unpriced_positions, x.collateral_value_usd,
           x.risk_adjusted_collateral_usd, x.obligation_usd,
           risk.health_factor(x.risk_adjusted_collateral_usd, x.obligation_usd) AS health_factor,
           risk.tier_named(coalesce((SELECT max(risk.tier_rank(p.tier)) FROM risk.positions p
                                     WHERE p.depositor = x.depositor AND p.is_open), 0)) AS worst_tier,
           x.updated_at
    FROM (
        SELECT e.depositor, sum(e.open_positions)::integer AS open_positions,
               coalesce(sum(e.open_positions) FILTER (WHERE ap.price IS NULL), 0)::integer AS unpriced_positions,
               round(coalesce(sum(e.collateral_amount * ap.price), 0), 8) AS collateral_value_usd,
               round(coalesce(sum(e.risk_adjusted_amount * ap.price), 0), 8) AS risk_adjusted_collateral_usd,
               coalesce(sum(e.obligation_usd) FILTER (WHERE ap.price IS NOT NULL), 0) AS obligation_usd,
               max(e.updated_at) AS updated_at
        FROM risk.portfolio_exposures e
        LEFT JOIN risk.asset_prices ap ON ap.asset_symbol = e.asset_symbol
        GROUP BY e.depositor
    ) x
"""


def upgrade() -> None:
    for statement in FUNCTIONS:
        op.execute(statement)
    op.execute(PORTFOLIOS)


def downgrade() -> None:
    # The view as 0003 wrote it (the same rules, inline), then the functions go.
    op.execute(PORTFOLIOS.replace(
        "risk.health_factor(x.risk_adjusted_collateral_usd, x.obligation_usd)",
        "CASE WHEN x.obligation_usd = 0 THEN 'Infinity'::numeric "
        "ELSE round(x.risk_adjusted_collateral_usd / x.obligation_usd, 8) END").replace(
        "risk.tier_named(coalesce((SELECT max(risk.tier_rank(p.tier)) FROM risk.positions p\n"
        "                                     WHERE p.depositor = x.depositor AND p.is_open), 0))",
        "coalesce((SELECT p.tier FROM risk.positions p WHERE p.depositor = x.depositor AND p.is_open "
        "AND p.tier IS NOT NULL ORDER BY CASE p.tier WHEN 'LIQUIDATION' THEN 3 WHEN 'MARGIN_CALL' THEN 2 "
        "WHEN 'WARNING' THEN 1 ELSE 0 END DESC LIMIT 1), 'HEALTHY')"))
    for signature in ("tier_rank(text)", "tier_named(integer)", "health_factor(numeric, numeric)"):
        op.execute(f"DROP FUNCTION risk.{signature}")
