"""Sharded rescreening: a rescreen key per screened user, and the record of each fan-out.

A shard is a range of rescreen keys (0..65535, from the user id's MD5, so shards are even whatever the
ids look like); the index lets each shard find its users without scanning everyone.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subjects", sa.Column(
        "rescreen_key", sa.Integer,
        sa.Computed("('x' || substr(md5(user_id), 1, 4))::bit(16)::integer", persisted=True),
        nullable=False), schema="compliance")
    op.create_index("subjects_by_rescreen_key", "subjects", ["rescreen_key"], schema="compliance")
    op.create_table(
        "rescreen_plans",
        sa.Column("snapshot_id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("shards", sa.Integer, nullable=False),
        sa.Column("users_behind", sa.Integer, nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema="compliance",
    )
    # The api reads every compliance table (fn_screen_compliance and fn_reconcile have default privileges).
    op.execute("GRANT SELECT ON compliance.rescreen_plans TO fn_api")


def downgrade() -> None:
    op.drop_table("rescreen_plans", schema="compliance")
    op.drop_index("subjects_by_rescreen_key", "subjects", schema="compliance")
    op.drop_column("subjects", "rescreen_key", schema="compliance")
