"""A price pass records each tier change once: as its margin event, without a snapshot of the same facts.

Since 0014 a margin event carries everything its position was assessed from (collateral, obligation,
price and its event id, health factor, both tiers) and is kept for the audit, while snapshots are
dropped after the retention. A price pass still wrote a snapshot of each tier change as well, the same
facts a second time: measured on a crash over 100k positions (34,684 changes), about a sixth of the
pass. Now only an escrow's change snapshots its position; a price pass's margin events have no
`snapshot_id` (their MarginTierChanged says `"snapshot_id": null`). A notify older than this release
refuses such a message as invalid and records it: where one is live, update notify first.

- Unpublished events are taken oldest first by `occurred_at` instead of by snapshot id. Their index is
  rebuilt CONCURRENTLY: margin events are never pruned, and a plain build would block every pass's
  writes while it reads the whole table. Those steps come first and can run again: a failed run leaves
  at worst an invalid index, which the next run drops.
- `risk.position_history` keeps one place to read a position's assessments: its snapshots (one at
  each change of the escrow) and the margin events of price passes. It shows what the tables hold:
  snapshots older than the retention are gone, margin events stay.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_HISTORY = """
    CREATE VIEW risk.position_history AS
    SELECT s.chain_id, s.contract, s.escrow_id, s.depositor, s.asset_symbol, s.collateral_amount,
           s.obligation_usd, s.price, s.price_event_id, s.health_factor, s.previous_tier, s.tier,
           s.correlation_id, s.cause_event_id, s.taken_at AS recorded_at, s.id AS snapshot_id,
           NULL::text AS margin_event_id
    FROM risk.margin_health_snapshots s
    UNION ALL
    SELECT m.chain_id, m.contract, m.escrow_id, m.depositor, m.asset_symbol, m.collateral_amount,
           m.obligation_usd, m.price, m.price_event_id, m.health_factor, m.previous_tier, m.tier,
           m.correlation_id, m.cause_event_id, m.occurred_at, NULL::bigint, m.event_id
    FROM risk.margin_events m
    WHERE m.snapshot_id IS NULL
"""


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # Alembic read the isolation level on entering the block, and pg8000 began a transaction for that
        # read: PostgreSQL refuses CONCURRENTLY inside it, so end it first (SQLAlchemy's pg8000 dialect
        # ends the one it opens to set an isolation level the same way).
        op.execute("COMMIT")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS risk.margin_events_unpublished_by_time")  # a failed run's
        op.execute("CREATE INDEX CONCURRENTLY margin_events_unpublished_by_time ON risk.margin_events "
                   "(occurred_at) WHERE published_at IS NULL")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS risk.margin_events_unpublished")
    op.execute("ALTER TABLE risk.margin_events ALTER COLUMN snapshot_id DROP NOT NULL")
    op.execute(_HISTORY)
    op.execute("GRANT SELECT ON risk.position_history TO fn_api")


def downgrade() -> None:
    # In one transaction, so a refusal changes nothing: NOT NULL fails once a price pass wrote a margin
    # event, whose snapshot was never taken.
    op.execute("DROP VIEW risk.position_history")
    op.execute("DROP INDEX risk.margin_events_unpublished_by_time")
    op.execute("CREATE INDEX margin_events_unpublished ON risk.margin_events (snapshot_id) "
               "WHERE published_at IS NULL")
    op.execute("ALTER TABLE risk.margin_events ALTER COLUMN snapshot_id SET NOT NULL")
