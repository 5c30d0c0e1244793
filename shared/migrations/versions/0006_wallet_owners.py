"""A wallet belongs to one user: identity.wallet_owners, unique per checksummed address.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_owners",
        # Checksummed (EIP-55), the one spelling the api stores: no variant can make a second owner.
        sa.Column("wallet", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("identity.users.user_id"), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        schema="identity",
    )
    # Users registered before the rule: the first registration of a wallet keeps it.
    op.execute("""
        INSERT INTO identity.wallet_owners (wallet, user_id, registered_at)
        SELECT w.wallet, u.user_id, u.registered_at
        FROM identity.users u CROSS JOIN LATERAL jsonb_array_elements_text(u.wallet_addresses) AS w(wallet)
        ORDER BY u.registered_at, u.user_id
        ON CONFLICT (wallet) DO NOTHING
    """)


def downgrade() -> None:
    op.drop_table("wallet_owners", schema="identity")
