"""settlement.late_events: contract events that reached settle after a later change of the same escrow.

Pub/Sub may push an escrow's approval after its refund. Both `created -> refunded` and
`created -> approved -> refunded` are legal, so settle applies the refund and the state is right; the
approval then changes nothing. Before, it was only logged, and the escrow's history (its transitions)
lacked a step the chain holds. Such an event is now recorded here when it fits the escrow's history (its
live transitions and the late events before it) around its position; an event that cannot fit there
(another fork's leftover) is still only logged. Its log orphaned later, the row is marked reverted, as a transition is.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "late_events",
        sa.Column("dedupe_key", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("contract", sa.Text, nullable=False),
        sa.Column("escrow_id", sa.Numeric(78, 0), nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("from_state", sa.Text, nullable=False),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("reverted_at", sa.DateTime(timezone=True)),
        schema="settlement",
    )
    op.create_index("late_events_by_escrow", "late_events",
                    ["chain_id", "contract", "escrow_id", "block_number", "log_index"], schema="settlement")


def downgrade() -> None:
    op.drop_table("late_events", schema="settlement")
