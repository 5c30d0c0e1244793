"""notify reads providers' callbacks by delivery and by provider message id: give both an index.

When notify records an email or SMS as sent, it applies the callbacks that arrived before it
(shared/notify/statuses.py, `apply_early_callbacks`): `provider_events WHERE delivery_id = :d OR
provider_message_id = :m`. Neither column had an index, so every send scanned every callback kept (90 days
of them under 0018's retention, several per message), inside the delivery's transaction and while holding
the provider message's lock that the callbacks wait on. The on-call trace (shared/ops/trace.py) reads them the
same way.

- provider_events_by_delivery (delivery_id), provider_events_by_provider_message (provider_message_id):
  the OR reads both, then combines them (a BitmapOr).

Built CONCURRENTLY (the table takes callbacks all the time), and can be built again after a failed run,
as in 0016.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

from shared.migrations.domains import create_indexes_concurrently

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

INDEXES = {
    "provider_events_by_delivery": "notify.provider_events (delivery_id)",
    "provider_events_by_provider_message": "notify.provider_events (provider_message_id)",
}


def upgrade() -> None:
    create_indexes_concurrently({f"notify.{name}": target for name, target in INDEXES.items()})


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX notify.{name}")
