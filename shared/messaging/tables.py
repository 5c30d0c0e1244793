"""The inbox, outbox and rejected-message tables that every domain schema carries.

Each domain role may write only its own schema, so each schema has its own copy of these tables;
this module builds the SQLAlchemy Core definitions for a given schema name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB


@dataclass(frozen=True)
class MessagingTables:
    """The three messaging tables of one schema."""

    inbox: Table
    outbox: Table
    rejected: Table


@functools.cache
def messaging_tables(schema: str) -> MessagingTables:
    """The messaging tables of `schema` (definitions only; the migrations create them)."""
    metadata = MetaData(schema=schema)
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("dedupe_key", Text, primary_key=True),
        Column("event_id", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("outcome", Text, nullable=False),
        Column("reason", Text),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("dedupe_key", Text, nullable=False, unique=True),
        Column("event_id", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("attributes", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Column("message_id", Text),
        # Staged rows are left to the caller publishing them from memory until then (outbox.enqueue_many).
        Column("publishing_until", DateTime(timezone=True)),
    )
    rejected = Table(
        "rejected_messages",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("message_id", Text, primary_key=True),
        Column("event_id", Text),
        Column("reason", Text, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("attributes", JSONB, nullable=False),
        Column("delivery_count", Integer, nullable=False, server_default="1"),
        Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return MessagingTables(inbox=inbox, outbox=outbox, rejected=rejected)
