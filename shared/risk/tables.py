"""The risk schema. Risk keeps its own projection of escrows, built from settle's events."""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, MetaData, Numeric, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from shared.risk import SCHEMA

metadata = MetaData(schema=SCHEMA)

# The synced escrows: one row per escrow settle told us about.
positions = Table(
    "positions",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("contract", Text, primary_key=True),
    Column("escrow_id", Numeric(78, 0), primary_key=True),
    Column("depositor", Text, nullable=False),
    Column("asset_token", Text, nullable=False),
    # NULL when the escrow's asset is not configured: stored, never assessed.
    Column("asset_symbol", Text),
    Column("collateral_amount", Numeric, nullable=False),
    Column("obligation_usd", Numeric(38, 8), nullable=False),
    Column("liquidation_threshold", Numeric),
    Column("state", Text, nullable=False),
    Column("is_open", Boolean, nullable=False),
    # settle's sequence of the escrow: a state change not newer than this is ignored.
    Column("sequence", Integer, nullable=False),
    # The tier of the last assessment (NULL: never assessed, counts as HEALTHY).
    Column("tier", Text),
    # The escrow's correlation id (its chain log's), carried by every margin event about it.
    Column("correlation_id", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The latest applied price per asset.
asset_prices = Table(
    "asset_prices",
    metadata,
    Column("asset_symbol", Text, primary_key=True),
    Column("price", Numeric, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("price_event_id", Text, nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
)

# Every price applied, with its provenance (sources, rounds, ages). A snapshot names its price by
# `price_event_id`: the provenance is stored once per price, not once per position.
applied_prices = Table(
    "applied_prices",
    metadata,
    Column("price_event_id", Text, primary_key=True),
    Column("asset_symbol", Text, nullable=False),
    Column("price", Numeric, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("provenance", JSONB, nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Its pass: the open positions assessed at this price, and how many changed tier (NULL before 0015).
    Column("positions_assessed", Integer),
    Column("tier_changes", Integer),
)

# A position's snapshot at every change of its escrow while open (since migration 0016 a price pass's tier
# changes are recorded by their margin events alone; `risk.position_history` reads both). Partitioned by
# day on taken_at (migration 0011; the reconciler creates and drops the partitions), so the key includes
# taken_at; ids come from one sequence across partitions.
margin_health_snapshots = Table(
    "margin_health_snapshots",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False,
           server_default=text("nextval('risk.margin_health_snapshots_id_seq')")),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", Text, nullable=False),
    Column("escrow_id", Numeric(78, 0), nullable=False),
    Column("depositor", Text, nullable=False),
    Column("asset_symbol", Text, nullable=False),
    Column("collateral_amount", Numeric, nullable=False),
    Column("obligation_usd", Numeric(38, 8), nullable=False),
    Column("price", Numeric, nullable=False),
    Column("collateral_value_usd", Numeric, nullable=False),
    # 'Infinity' when nothing is owed.
    Column("health_factor", Numeric, nullable=False),
    Column("previous_tier", Text),
    Column("tier", Text, nullable=False),
    # The applied price (applied_prices) this snapshot used, with its provenance.
    Column("price_event_id", Text, nullable=False),
    Column("correlation_id", Text, nullable=False),
    Column("cause_event_id", Text, nullable=False),
    Column("taken_at", DateTime(timezone=True), primary_key=True, server_default=func.now()),
)

# Every tier change of a position: the audit record of the alerts (kept MARGIN_EVENT_RETENTION_DAYS once
# published, shared/reconcile/retention.py), and the outbox of MarginTierChanged.
margin_events = Table(
    "margin_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", Text, nullable=False),
    Column("escrow_id", Numeric(78, 0), nullable=False),
    Column("depositor", Text, nullable=False),
    Column("previous_tier", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("health_factor", Numeric, nullable=False),
    Column("price", Numeric, nullable=False),
    # The snapshot of an escrow's change that moved the tier; NULL when a price pass did (migration 0016):
    # the event alone records that assessment.
    Column("snapshot_id", BigInteger),
    Column("correlation_id", Text, nullable=False),
    Column("cause_event_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The rest of what its MarginTierChanged message says (NULL only for events from before migration
    # 0014 whose snapshot and outbox row were both gone).
    Column("asset_symbol", Text),
    Column("collateral_amount", Numeric),
    Column("obligation_usd", Numeric(38, 8)),
    Column("price_event_id", Text),
    # The event is its own outbox row (shared/risk/margin_events.py): when Pub/Sub confirmed it, and its id.
    Column("published_at", DateTime(timezone=True)),
    Column("message_id", Text),
)

# What each depositor wallet has open per asset, independent of the price (see shared/risk/portfolio.py;
# the `risk.portfolios` view values it at current prices).
portfolio_exposures = Table(
    "portfolio_exposures",
    metadata,
    Column("depositor", Text, primary_key=True),
    Column("asset_symbol", Text, primary_key=True),
    Column("open_positions", Integer, nullable=False),
    Column("collateral_amount", Numeric, nullable=False),
    # Sum of collateral amount x the asset's liquidation threshold.
    Column("risk_adjusted_amount", Numeric, nullable=False),
    Column("obligation_usd", Numeric, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
