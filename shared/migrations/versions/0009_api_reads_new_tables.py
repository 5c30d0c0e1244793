"""The api reads the tables later migrations add to risk, notify and compliance, as it does settlement's.

Until now only settlement had default privileges for fn_api: a new risk, notify or compliance table was
unreadable by the api until a migration granted it by hand. `grant_reader` is the one way to grant a
reader from here on.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from shared.migrations.domains import grant_reader

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

API_READS = ("risk", "notify", "compliance")


def upgrade() -> None:
    for schema in API_READS:
        grant_reader(schema, "fn_api")


def downgrade() -> None:
    for schema in API_READS:
        op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE SELECT ON TABLES FROM fn_api")
