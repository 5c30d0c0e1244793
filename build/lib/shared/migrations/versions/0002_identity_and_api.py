"""identity domain (registered users) and the api role, which also reads settlement.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations.domains import create_domain, create_messaging_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("now()")
    create_domain("identity", "fn_api")
    create_messaging_tables("identity")
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("date_of_birth", sa.Date, nullable=False),
        sa.Column("country", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("phone", sa.Text, nullable=False),
        sa.Column("wallet_addresses", JSONB, nullable=False),
        sa.Column("notification_channels", JSONB, nullable=False),
        sa.Column("webhook_url", sa.Text),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema="identity",
    )
    # One account per email address, compared case-insensitively.
    op.create_index("users_email", "users", [sa.text("lower(email)")], unique=True, schema="identity")
    # The query API reads escrow records; it never writes them.
    op.execute("GRANT USAGE ON SCHEMA settlement TO fn_api")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA settlement TO fn_api")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA settlement GRANT SELECT ON TABLES TO fn_api")


def downgrade() -> None:
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA settlement FROM fn_api")
    op.execute("REVOKE USAGE ON SCHEMA settlement FROM fn_api")
    op.execute("DROP SCHEMA identity CASCADE")
