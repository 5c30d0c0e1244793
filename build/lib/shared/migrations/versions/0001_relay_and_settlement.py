"""relay and settlement domains: schemas, roles, messaging tables, checkpoint and escrows.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations.domains import create_domain, create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.text("now()")

    create_domain("relay", "fn_relay")
    create_messaging_tables("relay")
    op.create_table(
        "checkpoints",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("contract", sa.Text, primary_key=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.Text, nullable=False),
        sa.Column("range_size", sa.Integer, nullable=False),
        sa.Column("range_successes", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema="relay",
    )
    op.create_table(
        "blocks",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("contract", sa.Text, primary_key=True),
        sa.Column("block_number", sa.BigInteger, primary_key=True),
        sa.Column("block_hash", sa.Text, nullable=False),
        schema="relay",
    )
    op.create_table(
        "relayed_logs",
        sa.Column("dedupe_key", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("contract", sa.Text, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        schema="relay",
    )
    # Reorg repair reads the live logs after the common ancestor.
    op.create_index("relayed_logs_by_position", "relayed_logs",
                    ["chain_id", "contract", "block_number", "log_index"], schema="relay")

    create_domain("settlement", "fn_settle")
    create_messaging_tables("settlement")
    op.create_table(
        "escrows",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("contract", sa.Text, primary_key=True),
        sa.Column("escrow_id", sa.Numeric(78, 0), primary_key=True),
        sa.Column("depositor", sa.Text, nullable=False),
        sa.Column("beneficiary", sa.Text, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric(78, 0), nullable=False),
        sa.Column("obligation_usd", sa.Numeric(38, 8), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("last_block", sa.BigInteger, nullable=False),
        sa.Column("last_log_index", sa.Integer, nullable=False),
        sa.Column("created_event_id", sa.Text, nullable=False),
        sa.Column("created_block", sa.BigInteger, nullable=False),
        sa.Column("created_tx", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema="settlement",
    )
    # The query API filters by party, state and dates, and pages by (created_at, key).
    op.create_index("escrows_by_depositor", "escrows", ["depositor"], schema="settlement")
    op.create_index("escrows_by_beneficiary", "escrows", ["beneficiary"], schema="settlement")
    op.create_index("escrows_by_state", "escrows", ["state"], schema="settlement")
    op.create_index("escrows_by_created", "escrows", ["created_at", "chain_id", "contract", "escrow_id"],
                    schema="settlement")
    op.create_index("escrows_by_updated", "escrows", ["updated_at"], schema="settlement")
    op.create_table(
        "transitions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("contract", sa.Text, nullable=False),
        sa.Column("escrow_id", sa.Numeric(78, 0), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("from_state", sa.Text),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("reverted_at", sa.DateTime(timezone=True)),
        sa.Column("reverts_event_id", sa.Text),
        sa.UniqueConstraint("chain_id", "contract", "escrow_id", "sequence"),
        schema="settlement",
    )
    op.create_table(
        "orphaned_logs",
        sa.Column("dedupe_key", sa.Text, primary_key=True),
        sa.Column("removal_event_id", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema="settlement",
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA settlement CASCADE")
    op.execute("DROP SCHEMA relay CASCADE")
