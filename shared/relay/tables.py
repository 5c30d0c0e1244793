"""The relay schema: where scanning got to, by block number and hash."""

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, func

SCHEMA = "relay"
metadata = MetaData(schema=SCHEMA)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("contract", Text, primary_key=True),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
