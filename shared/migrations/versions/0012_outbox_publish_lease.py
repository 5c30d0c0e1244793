"""Outbox rows staged for publishing from memory carry a lease: `publishing_until`.

The caller that stages rows publishes them right after its commit and then marks them published, with no
row lock held across the publish. Until the lease ends, the other publishers (a drain after a redelivery,
the reconciler) leave such a row to its caller, so it is not sent twice; a caller that fails to publish
hands its rows back by clearing the lease, and a caller that dies lets it run out. Rows written any other
way have no lease and are drained as before.

Adding a nullable column without a default changes only the catalog: no table is rewritten.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Domain schemas with an inbox and an outbox (shared.migrations.domains.create_messaging_tables).
MESSAGING_SCHEMAS = ("relay", "settlement", "identity", "pricing", "risk", "notify", "compliance")


def upgrade() -> None:
    for schema in MESSAGING_SCHEMAS:
        op.execute(f"ALTER TABLE {schema}.outbox ADD COLUMN publishing_until timestamp with time zone")


def downgrade() -> None:
    for schema in MESSAGING_SCHEMAS:
        op.execute(f"ALTER TABLE {schema}.outbox DROP COLUMN publishing_until")
