"""Building blocks the migrations share: a domain's schema and role, and its messaging tables.

Migrations call these with literal names, so a migration's effect never changes after it ships.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB


def create_domain(schema: str, role: str) -> None:
    """Create `schema` and the NOLOGIN role that may write it and nothing else.

    In GCP the function's IAM database user is granted this role; locally the stack lets the
    role log in directly.
    """
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
        f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
    )
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    # Tables created later in this schema (by the migrator) are writable by the role too.
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}")


def grant_reader(schema: str, role: str) -> None:
    """Let `role` read every table of `schema`: those there now, and those later migrations create
    (default privileges of the migrator, who creates them)."""
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}")


def create_indexes_concurrently(indexes: dict[str, str]) -> None:
    """Build each index (schema-qualified name -> "table (columns)") without blocking the table's writers.

    PostgreSQL refuses CONCURRENTLY inside a transaction, so the one Alembic began for the migration is ended
    first (see 0016). An index a failed run left behind, maybe invalid, is dropped and built again."""
    with op.get_context().autocommit_block():
        op.execute("COMMIT")
        for name, target in indexes.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name.split('.')[-1]} ON {target}")


def drop_indexes(indexes: dict[str, str]) -> None:
    """Undo create_indexes_concurrently: drop each index by its schema-qualified name."""
    for name in indexes:
        op.execute(f"DROP INDEX {name}")


def create_messaging_tables(schema: str) -> None:
    """Create the inbox, outbox and rejected_messages tables of `schema`."""
    now = sa.text("now()")
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("dedupe_key", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=schema,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("attributes", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("message_id", sa.Text),
        schema=schema,
    )
    # The publisher scans for unpublished rows on every invocation; keep that scan tiny.
    op.create_index(
        "outbox_unpublished",
        "outbox",
        ["id"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "rejected_messages",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("attributes", JSONB, nullable=False),
        sa.Column("delivery_count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        schema=schema,
    )
