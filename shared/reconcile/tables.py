"""The ops schema (migration 0007): drifts, runs, the chain sweep's cursor, redrives and held dead letters."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, Numeric, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from shared.reconcile import SCHEMA

metadata = MetaData(schema=SCHEMA)

drifts = Table(
    "drifts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("source", JSONB),
    Column("replica", JSONB),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("seen_count", Integer, nullable=False, server_default="1"),
    Column("repair", Text),
    Column("repaired_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("checked", JSONB, nullable=False),
    Column("drifts", Integer, nullable=False),
    Column("repaired", Integer, nullable=False),
    Column("redriven", Integer, nullable=False),
    Column("held", Integer, nullable=False),
)

sweep_cursors = Table(
    "sweep_cursors",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("contract", Text, primary_key=True),
    Column("next_escrow_id", Numeric(78, 0), nullable=False),
)

redrives = Table(
    "redrives",
    metadata,
    Column("subscription", Text, primary_key=True),
    Column("message_key", Text, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("redrive_count", Integer, nullable=False),
    Column("first_redriven_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_redriven_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

held_dead_letters = Table(
    "held_dead_letters",
    metadata,
    Column("subscription", Text, primary_key=True),
    Column("message_key", Text, primary_key=True),
    Column("message_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("attributes", JSONB, nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
