"""compliance domain (sanctions lists, screenings, reviews); identity documents; settle's compliance holds.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations.domains import create_domain, create_messaging_tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "compliance"


def _snapshot() -> sa.ForeignKey:
    return sa.ForeignKey("compliance.list_snapshots.snapshot_id")


def _list_tables(timestamp) -> None:
    op.create_table(
        "list_snapshots",
        sa.Column("snapshot_id", sa.Integer, sa.Identity(), primary_key=True),
        # Not unique: a list can return to an earlier state (a delisting reverted), a new version then.
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("published_at", timestamp),
        sa.Column("loaded_at", timestamp, nullable=False, server_default=sa.text("now()")),
        sa.Column("counts", JSONB, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "sdn_entries",
        sa.Column("snapshot_id", sa.Integer, _snapshot(), primary_key=True),
        sa.Column("ent_num", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sdn_type", sa.Text),
        sa.Column("programs", sa.Text),
        sa.Column("title", sa.Text),
        sa.Column("remarks", sa.Text),
        schema=SCHEMA,
    )
    op.create_table(
        "sdn_aliases",
        sa.Column("snapshot_id", sa.Integer, _snapshot(), primary_key=True),
        sa.Column("ent_num", sa.Integer, primary_key=True),
        sa.Column("alt_num", sa.Integer, primary_key=True),
        sa.Column("alt_type", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("remarks", sa.Text),
        schema=SCHEMA,
    )
    op.create_table(
        "sdn_addresses",
        sa.Column("snapshot_id", sa.Integer, _snapshot(), primary_key=True),
        sa.Column("ent_num", sa.Integer, primary_key=True),
        sa.Column("add_num", sa.Integer, primary_key=True),
        sa.Column("address", sa.Text),
        sa.Column("city", sa.Text),
        sa.Column("country", sa.Text),
        sa.Column("remarks", sa.Text),
        schema=SCHEMA,
    )
    op.create_table(
        "listed_wallets",
        sa.Column("snapshot_id", sa.Integer, _snapshot(), primary_key=True),
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("ent_num", sa.Integer),
        schema=SCHEMA,
    )
    op.create_table(
        "list_load_failures",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("digest", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("failed_at", timestamp, nullable=False, server_default=sa.text("now()")),
        schema=SCHEMA,
    )


def _screening_tables(timestamp) -> None:
    now = sa.text("now()")
    op.create_table(
        "subjects",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("registered_event_id", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("date_of_birth", sa.Date),
        sa.Column("country", sa.Text),
        sa.Column("wallet_addresses", JSONB, nullable=False),
        sa.Column("identity_document", JSONB),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("latest_screening_id", sa.BigInteger, nullable=False),
        sa.Column("last_snapshot_id", sa.Integer, nullable=False),
        sa.Column("result_sequence", sa.Integer, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False, server_default=now),
        schema=SCHEMA,
    )
    # The rescreen after a new snapshot walks the subjects screened against an older one.
    op.create_index("subjects_by_snapshot", "subjects", ["last_snapshot_id", "user_id"], schema=SCHEMA)
    op.create_table(
        "screenings",
        sa.Column("screening_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("snapshot_id", sa.Integer, _snapshot(), nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("cause_event_id", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        sa.Column("screened_at", timestamp, nullable=False, server_default=now),
        # A snapshot screens a user once per trigger: a retried rescreen batch cannot add a second run.
        sa.UniqueConstraint("user_id", "snapshot_id", "cause_event_id", name="screenings_once"),
        schema=SCHEMA,
    )
    op.create_index("screenings_by_user", "screenings", ["user_id", "screening_id"], schema=SCHEMA)
    op.create_table(
        "hits",
        sa.Column("hit_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("screening_id", sa.BigInteger, sa.ForeignKey("compliance.screenings.screening_id"), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("check", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("effect", sa.Text, nullable=False),
        sa.Column("score", sa.Numeric),
        sa.Column("list_entry", sa.Integer),
        sa.Column("evidence", JSONB, nullable=False),
        sa.Column("review_status", sa.Text),
        sa.Column("review_id", sa.Text),
        schema=SCHEMA,
    )
    op.create_index("hits_by_screening", "hits", ["screening_id"], schema=SCHEMA)
    op.create_index("hits_by_user_entry", "hits", ["user_id", "code", "list_entry"], schema=SCHEMA)
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.Text, primary_key=True),
        sa.Column("hit_id", sa.BigInteger, sa.ForeignKey("compliance.hits.hit_id"), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("requested_at", timestamp, nullable=False),
        sa.Column("applied_at", timestamp, nullable=False, server_default=now),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        schema=SCHEMA,
    )


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    create_domain(SCHEMA, "fn_screen_compliance")
    create_messaging_tables(SCHEMA)
    _list_tables(timestamp)
    _screening_tables(timestamp)
    # The query API serves compliance status and history, and checks a review before accepting it.
    op.execute("GRANT USAGE ON SCHEMA compliance TO fn_api")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA compliance TO fn_api")

    # What registration keeps of the identity document: never its number, only its last four characters.
    for column in (sa.Column("document_type", sa.Text), sa.Column("document_issuing_country", sa.Text),
                   sa.Column("document_expires_on", sa.Date), sa.Column("document_number_last4", sa.Text)):
        op.add_column("users", column, schema="identity")

    op.create_table(
        "compliance_statuses",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        sa.Column("decided_at", timestamp, nullable=False),
        sa.Column("updated_at", timestamp, nullable=False, server_default=sa.text("now()")),
        schema="settlement",
    )
    op.create_table(
        "compliance_wallets",
        sa.Column("wallet", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        schema="settlement",
    )
    op.create_index("compliance_wallets_by_user", "compliance_wallets", ["user_id"], schema="settlement")


def downgrade() -> None:
    op.drop_table("compliance_wallets", schema="settlement")
    op.drop_table("compliance_statuses", schema="settlement")
    for column in ("document_type", "document_issuing_country", "document_expires_on", "document_number_last4"):
        op.drop_column("users", column, schema="identity")
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA compliance FROM fn_api")
    op.execute("REVOKE USAGE ON SCHEMA compliance FROM fn_api")
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
