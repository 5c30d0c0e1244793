"""The relay schema: where scanning got to, the block hashes it saw, and every log it relayed."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from shared.relay import SCHEMA

metadata = MetaData(schema=SCHEMA)

# One row per (chain, contract): the last block scanned, its hash, and the adaptive range state.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("contract", Text, primary_key=True),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", Text, nullable=False),
    Column("range_size", Integer, nullable=False),
    Column("range_successes", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Hashes of the scanned blocks that matter for reorg repair: every block with a relayed log, and
# every range end. Walking these backwards finds the common ancestor after a reorganisation.
blocks = Table(
    "blocks",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("contract", Text, primary_key=True),
    Column("block_number", BigInteger, primary_key=True),
    Column("block_hash", Text, nullable=False),
)

# Every log relayed, so a reorganisation can publish a compensating event for each orphaned one.
relayed_logs = Table(
    "relayed_logs",
    metadata,
    Column("dedupe_key", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", Text, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("envelope", JSONB, nullable=False),
    Column("relayed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("removed_at", DateTime(timezone=True)),
)
