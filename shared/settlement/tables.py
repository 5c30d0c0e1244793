"""The settlement schema: escrow records, their transition history, and orphaned logs."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Numeric, Table, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB

from shared.settlement import SCHEMA

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
    # Number of the latest transition (reverts included): downstream orders changes by it.
    Column("sequence", Integer, nullable=False),
    # Chain position of the last applied change; an event at or before it changes nothing.
    Column("last_block", BigInteger, nullable=False),
    Column("last_log_index", Integer, nullable=False),
    Column("created_event_id", Text, nullable=False),
    Column("created_block", BigInteger, nullable=False),
    Column("created_tx", Text, nullable=False),
    # Chain times (block timestamps) of creation and of the last change.
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
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
    Column("event_id", Text, nullable=False),
    Column("dedupe_key", Text, nullable=False, unique=True),
    Column("block_number", BigInteger, nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when a reorganisation orphaned the log that made this transition.
    Column("reverted_at", DateTime(timezone=True)),
    # On a revert row: the event id of the orphaned log it undid.
    Column("reverts_event_id", Text),
    UniqueConstraint("chain_id", "contract", "escrow_id", "sequence"),
)

# Contract events that reached settle after a later change of the same escrow, and fit the history there
# (migration 0023): the state already reflects them; they complete the escrow's history.
late_events = Table(
    "late_events",
    metadata,
    Column("dedupe_key", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", Text, nullable=False),
    Column("escrow_id", Numeric(78, 0), nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("log_index", Integer, nullable=False),
    # The states the chain moved the escrow between with this event.
    Column("from_state", Text, nullable=False),
    Column("to_state", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when a reorganisation orphaned its log.
    Column("reverted_at", DateTime(timezone=True)),
)

# Logs a reorganisation orphaned; if one arrives after its removal, it is ignored.
orphaned_logs = Table(
    "orphaned_logs",
    metadata,
    Column("dedupe_key", Text, primary_key=True),
    Column("removal_event_id", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The latest compliance decision per user (from compliance.results.v1) and the wallets it covers.
# An escrow whose depositor or beneficiary is a wallet of a user whose decision is not APPROVED is held.
compliance_statuses = Table(
    "compliance_statuses",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("decision", Text, nullable=False),
    # compliance's result sequence for the user: an older result changes nothing.
    Column("sequence", Integer, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

compliance_wallets = Table(
    "compliance_wallets",
    metadata,
    Column("wallet", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
)
