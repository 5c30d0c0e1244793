"""The notify schema: its own projection of contacts, and every delivery with its attempts."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.notify import SCHEMA

metadata = MetaData(schema=SCHEMA)

# Built from users.registered.v1: how to reach a user, and which wallets are theirs.
contacts = Table(
    "contacts",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("email", Text, nullable=False),
    Column("phone", Text, nullable=False),
    Column("channels", JSONB, nullable=False),
    Column("webhook_url", Text),
    # False once an endpoint answered 410 Gone (Standard Webhooks): it is not called again.
    Column("webhook_enabled", Boolean, nullable=False, server_default="true"),
    Column("registered_event_id", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

contact_wallets = Table(
    "contact_wallets",
    metadata,
    # Lower-case address: margin events name the depositor wallet, checksummed or not.
    Column("wallet", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
)

# One row per (event, channel): the unit of idempotency. A redelivered event never sends again a
# channel that went out; it retries only what did not.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    # pending -> sent -> delivered | bounced | undelivered | failed; pending -> failed
    Column("status", Text, nullable=False),
    Column("provider_message_id", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("correlation_id", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("event_id", "channel", name="deliveries_event_channel"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, ForeignKey("notify.deliveries.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    # sent | transient | permanent
    Column("outcome", Text, nullable=False),
    Column("status_code", Integer),
    Column("detail", Text),
    Column("provider_message_id", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every status callback, once per provider event: a duplicate callback changes nothing.
provider_events = Table(
    "provider_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("provider", Text, nullable=False),
    Column("provider_event_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("delivery_id", BigInteger),
    Column("provider_message_id", Text),
    Column("body", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("provider", "provider_event_id", name="provider_events_once"),
)

# Margin events about a wallet no registered user owns: nobody to notify; kept for operators.
unrouted_events = Table(
    "unrouted_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("wallet", Text, nullable=False),
    Column("correlation_id", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
