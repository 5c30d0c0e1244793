"""risk.margin_events is the outbox of MarginTierChanged: each tier change is written once and published
from its own row.

A pass recorded every tier change twice: a margin event, and an outbox row holding the same facts as a
JSON envelope (about 1.3 KB). Measured on a crash over 100k positions (44,688 changes), the outbox insert
was half of the statement that records the changes (about 1 s of 2). The margin event now carries the
few facts its message needs besides its own (asset, collateral, obligation, the price's event id) and
its publication (`published_at`, `message_id`); shared/risk/margin_events.py builds the envelope when it
publishes the row. MarginAlertRetracted, written one at a time, still goes through risk.outbox.

Existing events: their content columns are filled from their snapshot, else from their outbox row. An
event whose outbox row was published keeps that row's time and message id; one whose outbox row is
still unpublished loses that row and is published from here; one whose outbox row is gone was published
(only published rows are pruned) at a time not kept: `occurred_at` stands in, with no message id.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_CONTENT = ("asset_symbol text", "collateral_amount numeric", "obligation_usd numeric(38,8)",
            "price_event_id text")
_PUBLICATION = ("published_at timestamp with time zone", "message_id text")


def upgrade() -> None:
    for column in _CONTENT + _PUBLICATION:
        op.execute(f"ALTER TABLE risk.margin_events ADD COLUMN {column}")
    op.execute("""
        UPDATE risk.margin_events m
        SET asset_symbol = s.asset_symbol, collateral_amount = s.collateral_amount,
            obligation_usd = s.obligation_usd, price_event_id = s.price_event_id
        FROM risk.margin_health_snapshots s
        WHERE s.id = m.snapshot_id AND s.taken_at = m.occurred_at
    """)
    op.execute("""
        UPDATE risk.margin_events m
        SET asset_symbol = o.envelope->'payload'->>'asset',
            collateral_amount = (o.envelope->'payload'->>'collateral_amount')::numeric,
            obligation_usd = (o.envelope->'payload'->>'obligation_usd')::numeric,
            price_event_id = o.envelope->'payload'->>'price_event_id'
        FROM risk.outbox o
        WHERE o.event_id = m.event_id AND m.asset_symbol IS NULL
    """)
    op.execute("""
        UPDATE risk.margin_events m SET published_at = o.published_at, message_id = o.message_id
        FROM risk.outbox o WHERE o.event_id = m.event_id AND o.published_at IS NOT NULL
    """)
    op.execute("""
        UPDATE risk.margin_events m SET published_at = m.occurred_at
        WHERE NOT EXISTS (SELECT 1 FROM risk.outbox o WHERE o.event_id = m.event_id)
    """)
    op.execute("""
        DELETE FROM risk.outbox o USING risk.margin_events m
        WHERE o.event_id = m.event_id AND o.published_at IS NULL
    """)
    # What the publisher takes, in the order the passes wrote it; and the recent events the reconciler
    # compares with notify's inbox.
    op.execute("CREATE INDEX margin_events_unpublished ON risk.margin_events (snapshot_id) "
               "WHERE published_at IS NULL")
    op.execute("CREATE INDEX margin_events_by_time ON risk.margin_events (occurred_at)")
    op.execute("GRANT UPDATE (published_at, message_id) ON risk.margin_events TO fn_reconcile")


def downgrade() -> None:
    op.execute("REVOKE UPDATE (published_at, message_id) ON risk.margin_events FROM fn_reconcile")
    op.execute("DROP INDEX risk.margin_events_by_time")
    op.execute("DROP INDEX risk.margin_events_unpublished")
    for column in _CONTENT + _PUBLICATION:
        op.execute(f"ALTER TABLE risk.margin_events DROP COLUMN {column.split()[0]}")
