"""pricing and risk domains; the api role also reads risk.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.migrations.domains import create_domain, create_messaging_tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _escrow_key(primary: bool) -> list[sa.Column]:
    return [
        sa.Column("chain_id", sa.BigInteger, primary_key=primary, nullable=False),
        sa.Column("contract", sa.Text, primary_key=primary, nullable=False),
        sa.Column("escrow_id", sa.Numeric(78, 0), primary_key=primary, nullable=False),
    ]


def upgrade() -> None:
    now = sa.text("now()")
    timestamp = sa.DateTime(timezone=True)

    create_domain("pricing", "fn_fetch_price")
    create_messaging_tables("pricing")
    op.create_table(
        "asset_state",
        sa.Column("asset", sa.Text, primary_key=True),
        sa.Column("last_fetched_at", timestamp),
        sa.Column("last_good_price", sa.Numeric),
        sa.Column("last_good_at", timestamp),
        sa.Column("held_price", sa.Numeric),
        sa.Column("held_at", timestamp),
        sa.Column("last_published_price", sa.Numeric),
        sa.Column("last_published_at", timestamp),
        sa.Column("sequence", sa.Integer, nullable=False, server_default="0"),
        schema="pricing",
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("fetch_id", UUID, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("price", sa.Numeric),
        sa.Column("source_updated_at", timestamp),
        sa.Column("round_id", sa.Numeric(30, 0)),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("age_seconds", sa.Numeric),
        sa.Column("reason", sa.Text),
        sa.Column("fetched_at", timestamp, nullable=False),
        schema="pricing",
    )
    op.create_index("observations_asset_time", "observations", ["asset", "fetched_at"], schema="pricing")
    op.create_table(
        "decisions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("fetch_id", UUID, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("price", sa.Numeric),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("published_event_id", sa.Text),
        sa.Column("decided_at", timestamp, nullable=False),
        schema="pricing",
    )
    op.create_index("decisions_asset_time", "decisions", ["asset", "decided_at"], schema="pricing")

    create_domain("risk", "fn_assess_margin")
    create_messaging_tables("risk")
    op.create_table(
        "positions",
        *_escrow_key(primary=True),
        sa.Column("depositor", sa.Text, nullable=False),
        sa.Column("asset_token", sa.Text, nullable=False),
        sa.Column("asset_symbol", sa.Text),
        sa.Column("collateral_amount", sa.Numeric, nullable=False),
        sa.Column("obligation_usd", sa.Numeric(38, 8), nullable=False),
        sa.Column("liquidation_threshold", sa.Numeric),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("is_open", sa.Boolean, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("tier", sa.Text),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False, server_default=now),
        schema="risk",
    )
    # A price update reads every open position on its asset.
    op.create_index("positions_open_by_asset", "positions", ["asset_symbol"], schema="risk",
                    postgresql_where=sa.text("is_open"))
    op.create_index("positions_by_depositor", "positions", ["depositor"], schema="risk")
    op.create_table(
        "asset_prices",
        sa.Column("asset_symbol", sa.Text, primary_key=True),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("price_event_id", sa.Text, nullable=False),
        sa.Column("observed_at", timestamp, nullable=False),
        schema="risk",
    )
    op.create_table(
        "applied_prices",
        sa.Column("price_event_id", sa.Text, primary_key=True),
        sa.Column("asset_symbol", sa.Text, nullable=False),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("provenance", JSONB, nullable=False),
        sa.Column("observed_at", timestamp, nullable=False),
        sa.Column("applied_at", timestamp, nullable=False, server_default=now),
        schema="risk",
    )
    op.create_table(
        "margin_health_snapshots",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        *_escrow_key(primary=False),
        sa.Column("depositor", sa.Text, nullable=False),
        sa.Column("asset_symbol", sa.Text, nullable=False),
        sa.Column("collateral_amount", sa.Numeric, nullable=False),
        sa.Column("obligation_usd", sa.Numeric(38, 8), nullable=False),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("collateral_value_usd", sa.Numeric, nullable=False),
        sa.Column("health_factor", sa.Numeric, nullable=False),
        sa.Column("previous_tier", sa.Text),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("price_event_id", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("cause_event_id", sa.Text, nullable=False),
        sa.Column("taken_at", timestamp, nullable=False, server_default=now),
        schema="risk",
    )
    # By escrow id alone: a composite (chain, contract, escrow, id) index made the 100k-row pass 40%
    # slower; ids repeat only across contracts, which the lookup then filters.
    op.create_index("snapshots_by_escrow", "margin_health_snapshots", ["escrow_id"], schema="risk")
    op.create_table(
        "margin_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        *_escrow_key(primary=False),
        sa.Column("depositor", sa.Text, nullable=False),
        sa.Column("previous_tier", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("health_factor", sa.Numeric, nullable=False),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("cause_event_id", sa.Text, nullable=False),
        sa.Column("occurred_at", timestamp, nullable=False, server_default=now),
        schema="risk",
    )
    op.create_index("margin_events_by_escrow", "margin_events", ["chain_id", "contract", "escrow_id"],
                    schema="risk")
    op.create_table(
        "portfolio_exposures",
        sa.Column("depositor", sa.Text, primary_key=True),
        sa.Column("asset_symbol", sa.Text, primary_key=True),
        sa.Column("open_positions", sa.Integer, nullable=False),
        sa.Column("collateral_amount", sa.Numeric, nullable=False),
        sa.Column("risk_adjusted_amount", sa.Numeric, nullable=False),
        sa.Column("obligation_usd", sa.Numeric, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        schema="risk",
    )
    op.execute("""
        CREATE VIEW risk.portfolios AS
        SELECT x.depositor, x.open_positions, x.unpriced_positions, x.collateral_value_usd,
               x.risk_adjusted_collateral_usd, x.obligation_usd,
               CASE WHEN x.obligation_usd = 0 THEN 'Infinity'::numeric
                    ELSE round(x.risk_adjusted_collateral_usd / x.obligation_usd, 8) END AS health_factor,
               coalesce((SELECT p.tier FROM risk.positions p
                         WHERE p.depositor = x.depositor AND p.is_open AND p.tier IS NOT NULL
                         ORDER BY CASE p.tier WHEN 'LIQUIDATION' THEN 3 WHEN 'MARGIN_CALL' THEN 2
                                              WHEN 'WARNING' THEN 1 ELSE 0 END DESC
                         LIMIT 1), 'HEALTHY') AS worst_tier,
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
    """)
    # The query API reads risk (portfolios, snapshots, margin events); it never writes them.
    # (Granted after the view exists: GRANT ... ON ALL TABLES covers views created so far.)
    op.execute("GRANT USAGE ON SCHEMA risk TO fn_api")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA risk TO fn_api")


def downgrade() -> None:
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA risk FROM fn_api")
    op.execute("REVOKE USAGE ON SCHEMA risk FROM fn_api")
    op.execute("DROP SCHEMA risk CASCADE")
    op.execute("DROP SCHEMA pricing CASCADE")
