"""notify domain: contacts projection, deliveries and their attempts.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations.domains import create_domain, create_messaging_tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("now()")
    timestamp = sa.DateTime(timezone=True)
    create_domain("notify", "fn_notify")
    create_messaging_tables("notify")
    op.create_table(
        "contacts",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("phone", sa.Text, nullable=False),
        sa.Column("channels", JSONB, nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("registered_event_id", sa.Text, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False, server_default=now),
        schema="notify",
    )
    op.create_table(
        "contact_wallets",
        sa.Column("wallet", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        schema="notify",
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("provider_message_id", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reason", sa.Text),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", timestamp, nullable=False, server_default=now),
        sa.Column("updated_at", timestamp, nullable=False, server_default=now),
        sa.UniqueConstraint("event_id", "channel", name="deliveries_event_channel"),
        schema="notify",
    )
    op.create_index("deliveries_by_user", "deliveries", ["user_id", "created_at"], schema="notify")
    op.create_index("deliveries_by_provider_id", "deliveries", ["provider_message_id"], schema="notify")
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey("notify.deliveries.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("provider_message_id", sa.Text),
        sa.Column("started_at", timestamp, nullable=False),
        sa.Column("finished_at", timestamp, nullable=False, server_default=now),
        schema="notify",
    )
    op.create_table(
        "provider_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("provider_event_id", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("delivery_id", sa.BigInteger),
        sa.Column("provider_message_id", sa.Text),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("received_at", timestamp, nullable=False, server_default=now),
        sa.UniqueConstraint("provider", "provider_event_id", name="provider_events_once"),
        schema="notify",
    )
    op.create_table(
        "unrouted_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("wallet", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("received_at", timestamp, nullable=False, server_default=now),
        schema="notify",
    )
    # The query API serves notification history.
    op.execute("GRANT USAGE ON SCHEMA notify TO fn_api")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA notify TO fn_api")


def downgrade() -> None:
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA notify FROM fn_api")
    op.execute("REVOKE USAGE ON SCHEMA notify FROM fn_api")
    op.execute("DROP SCHEMA notify CASCADE")
