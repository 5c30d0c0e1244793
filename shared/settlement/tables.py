"""The settlement schema: escrow records and every transition they went through."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    func,
)

SCHEMA = "settlement"
metadata = MetaData(schema=SCHEMA)

escrows = Table(
    "escrows",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("contract", Text, primary_key=True),
    Column("escrow_id", Numeric(78, 0), primary_key=True),
    Column("depositor", Text, nullable=False),
    Column("beneficiary", Text, nullable=False),
    Column("asset", Text, nullable=False),
    Column("amount", Numeric(78, 0), nullable=False),
    Column("obligation_usd", Numeric(38, 8), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("created_event_id", Text, nullable=False),
    Column("created_block", BigInteger, nullable=False),
    Column("created_tx", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", Text, nullable=False),
    Column("escrow_id", Numeric(78, 0), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("from_state", Text),
    Column("to_state", Text, nullable=False),
    Column("event_id", Text, nullable=False, unique=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("chain_id", "contract", "escrow_id", "sequence"),
)
