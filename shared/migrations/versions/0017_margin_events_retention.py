"""Margin events have a retention too: published ones older than it are deleted by the reconciler's runs.

Since 0016 a price pass records each tier change only as its margin event, so the events grow with every
pass that moves a tier: measured at 539 B an event (indexes included), a routine move a minute over 1M
positions adds about 29 GiB a day, and nothing deleted them. They are the alert trail and a part of
`risk.position_history`, so they are kept longer than snapshots, for a retention of their own
(MARGIN_EVENT_RETENTION_DAYS, shared/reconcile/settings.py).

- ops.prune_margin_events(retention_days, max_rows): the oldest published margin events older than the
  retention, at most max_rows per call (by `margin_events_by_time`). An unpublished event is never
  deleted: it is still the outbox row of its alert. Refuses a retention below 2 days, since the reconciler
  compares the last day of margin events with what notify received.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SIGNATURE = "ops.prune_margin_events(integer, integer)"

PRUNE_MARGIN_EVENTS = r"""
CREATE OR REPLACE FUNCTION ops.prune_margin_events(retention_days integer, max_rows integer)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 2 OR max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'margin event retention >= 2 days, max_rows >= 1 (got %, %)', retention_days, max_rows;
    END IF;
    DELETE FROM risk.margin_events WHERE event_id IN (
        SELECT event_id FROM risk.margin_events
        WHERE occurred_at < now() - make_interval(days => retention_days) AND published_at IS NOT NULL
        ORDER BY occurred_at LIMIT max_rows);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END $$
"""


def upgrade() -> None:
    op.execute(PRUNE_MARGIN_EVENTS)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO fn_reconcile")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
