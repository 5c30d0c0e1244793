"""The identity schema: registered users."""

from sqlalchemy import Column, Date, DateTime, ForeignKey, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB

from shared.identity import SCHEMA

metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("date_of_birth", Date, nullable=False),
    Column("country", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("phone", Text, nullable=False),
    Column("wallet_addresses", JSONB, nullable=False),
    Column("notification_channels", JSONB, nullable=False),
    Column("webhook_url", Text),
    # The identity document, minimised: its number is never stored, only the last four characters.
    Column("document_type", Text),
    Column("document_issuing_country", Text),
    Column("document_expires_on", Date),
    Column("document_number_last4", Text),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A wallet belongs to one user: a second registration naming it is refused (409).
wallet_owners = Table(
    "wallet_owners",
    metadata,
    Column("wallet", Text, primary_key=True),
    Column("user_id", Text, ForeignKey("identity.users.user_id"), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
