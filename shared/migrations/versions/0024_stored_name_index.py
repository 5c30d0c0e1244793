"""The name-blocking index of a sanctions list snapshot, stored with it.

screen-compliance built the whole index (10,892 names, 108,811 blocking keys) in memory on its first
registration: 0.2-0.4 s of every new instance's first answer. It now reads the part one search needs,
in one statement, from these tables, which refresh-sanctions writes with each snapshot. They are derived
from the snapshot's names, and read only when built by the same matching rules (`rules_version`).
Their keys lead with what is looked up, not with the snapshot: a snapshot just loaded is not analysed
yet, and keyed by snapshot first its rows were scanned whole (50 ms a registration instead of 2 ms).

Revision ID: 0024
Revises: 0023
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def _of_index() -> sa.ForeignKey:
    """A part of a snapshot's name index goes with it."""
    return sa.ForeignKey("compliance.name_indexes.snapshot_id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "name_indexes",
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("compliance.list_snapshots.snapshot_id"),
                  primary_key=True),
        sa.Column("rules_version", sa.Text, nullable=False),
        sa.Column("names", sa.Integer, nullable=False),
        sa.Column("keys", sa.Integer, nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema="compliance",
    )
    op.create_table(
        "name_index_names",
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("snapshot_id", sa.Integer, _of_index(), primary_key=True),
        sa.Column("ent_num", sa.Integer, nullable=False),
        sa.Column("alt_num", sa.Integer),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("entry_name", sa.Text, nullable=False),
        sa.Column("programs", sa.Text),
        schema="compliance",
    )
    op.create_table(
        "name_index_tokens",
        sa.Column("token", sa.Text, primary_key=True),
        sa.Column("snapshot_id", sa.Integer, _of_index(), primary_key=True),
        sa.Column("positions", ARRAY(sa.Integer), nullable=False),
        schema="compliance",
    )
    op.create_table(
        "name_index_keys",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("snapshot_id", sa.Integer, _of_index(), primary_key=True),
        sa.Column("tokens", ARRAY(sa.Text), nullable=False),
        schema="compliance",
    )


def downgrade() -> None:
    for table in ("name_index_keys", "name_index_tokens", "name_index_names", "name_indexes"):
        op.drop_table(table, schema="compliance")
