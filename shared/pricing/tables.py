"""The pricing schema: per-asset guard state, every source observation, every decision."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Numeric, Table, Text
from sqlalchemy.dialects.postgresql import UUID

from shared.pricing import SCHEMA

metadata = MetaData(schema=SCHEMA)

asset_state = Table(
    "asset_state",
    metadata,
    Column("asset", Text, primary_key=True),
    Column("last_fetched_at", DateTime(timezone=True)),
    Column("last_good_price", Numeric),
    Column("last_good_at", DateTime(timezone=True)),
    Column("held_price", Numeric),
    Column("held_at", DateTime(timezone=True)),
    Column("last_published_price", Numeric),
    Column("last_published_at", DateTime(timezone=True)),
    # How many prices of this asset were published; the next PriceUpdated carries sequence + 1.
    Column("sequence", Integer, nullable=False, server_default="0"),
)

# Price history: one row per source per fetch, usable or not.
observations = Table(
    "observations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("fetch_id", UUID(as_uuid=False), nullable=False),
    Column("asset", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("price", Numeric),
    Column("source_updated_at", DateTime(timezone=True)),
    # Chainlink round ids are uint80.
    Column("round_id", Numeric(30, 0)),
    Column("status", Text, nullable=False),
    Column("age_seconds", Numeric),
    Column("reason", Text),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

# One row per asset per fetch: what the guards concluded, and the event published, if any.
decisions = Table(
    "decisions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("fetch_id", UUID(as_uuid=False), nullable=False),
    Column("asset", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("price", Numeric),
    Column("reason", Text, nullable=False),
    Column("published_event_id", Text),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)
