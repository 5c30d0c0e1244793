"""The reconciler's schema: drifts it found (and what it repaired), its runs, and dead-letter redrives.

fn_reconcile reads every domain's tables, and may publish any domain's pending outbox rows
(UPDATE of published_at and message_id only): it is the one role that looks across the domains.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations.domains import create_domain

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = "ops"
ROLE = "fn_reconcile"
# Domains the reconciler compares, and whose outboxes it may publish.
READ_SCHEMAS = ("relay", "settlement", "identity", "pricing", "risk", "notify", "compliance")


def upgrade() -> None:
    create_domain(SCHEMA, ROLE)
    now = sa.text("now()")
    op.create_table(
        "drifts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        # The drifting item in its canonical spelling (e.g. chain_id:contract:escrow_id).
        sa.Column("key", sa.Text, nullable=False),
        # Both sides as each one holds them: the source of truth and the copy that drifted.
        sa.Column("source", JSONB),
        sa.Column("replica", JSONB),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("seen_count", sa.Integer, nullable=False, server_default="1"),
        # What the reconciler did about it; NULL: left for a person, with the evidence above.
        sa.Column("repair", sa.Text),
        sa.Column("repaired_at", sa.DateTime(timezone=True)),
        # Set by the first run that no longer finds it.
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("drifts_open", "drifts", ["kind", "key"], unique=True, schema=SCHEMA,
                    postgresql_where=sa.text("resolved_at IS NULL"))
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        # What each check looked at (counts), so a clean run says how much it found clean.
        sa.Column("checked", JSONB, nullable=False),
        sa.Column("drifts", sa.Integer, nullable=False),
        sa.Column("repaired", sa.Integer, nullable=False),
        sa.Column("redriven", sa.Integer, nullable=False),
        sa.Column("held", sa.Integer, nullable=False),
        schema=SCHEMA,
    )
    # Where the rolling chain sweep got to, per contract.
    op.create_table(
        "sweep_cursors",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("contract", sa.Text, primary_key=True),
        sa.Column("next_escrow_id", sa.Numeric(78, 0), nullable=False),
        schema=SCHEMA,
    )
    # Every dead letter moved back to its topic, per source subscription and event.
    op.create_table(
        "redrives",
        sa.Column("subscription", sa.Text, primary_key=True),
        sa.Column("message_key", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("redrive_count", sa.Integer, nullable=False),
        sa.Column("first_redriven_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("last_redriven_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=SCHEMA,
    )
    # Dead letters no longer redriven: unreadable, or back again after every redrive. Kept with the reason.
    op.create_table(
        "held_dead_letters",
        sa.Column("subscription", sa.Text, primary_key=True),
        sa.Column("message_key", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("attributes", JSONB, nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=SCHEMA,
    )
    for schema in READ_SCHEMAS:
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {ROLE}")
        op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ROLE}")
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {ROLE}")
        op.execute(f"GRANT UPDATE (published_at, message_id) ON {schema}.outbox TO {ROLE}")
    # relay finds the creation log of an escrow (its correlation id) for every later log.
    op.execute("CREATE INDEX relayed_creations ON relay.relayed_logs "
               "(chain_id, contract, (envelope->'payload'->>'escrow_id')) "
               "WHERE envelope->>'event_type' = 'EscrowCreated'")


def downgrade() -> None:
    op.execute("DROP INDEX relay.relayed_creations")
    for schema in READ_SCHEMAS:
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE SELECT ON TABLES FROM {ROLE}")
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {ROLE}")
        op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {ROLE}")
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
