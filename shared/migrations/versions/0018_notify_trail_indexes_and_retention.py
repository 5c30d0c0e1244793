"""notify's delivery trail gets the indexes its readers need, and a retention.

Each alert a user gets leaves a delivery per channel, its attempts and the providers' callbacks, and
nothing deleted them: at a busy market's rate (millions of tier changes a day) they grow as fast as the
margin events, which 0017 prunes.

- delivery_attempts_by_delivery (delivery_id): the api's notification history reads each delivery's
  attempts by it, and so does pruning; without it every delivery read scanned all attempts.
- deliveries_by_age (created_at), provider_events_by_age (received_at), unrouted_events_by_age
  (received_at): pruning walks by age.
- ops.prune_notifications(retention_days, max_rows): the oldest deliveries past the retention that are no
  longer pending, with their attempts; providers' callbacks and unrouted events received before it. At
  most max_rows deliveries, callbacks and unrouted events per call; returns the counts per table. A
  pending delivery is never deleted: it is still owed. Refuses a retention below 8 days: a delivery row is
  what keeps a redelivered event from being sent again, and Pub/Sub redelivers for up to 7 days.

The indexes are built CONCURRENTLY (the tables only grow), first, and can be built again after a failed
run, as in 0016.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from shared.migrations.domains import create_indexes_concurrently

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

SIGNATURE = "ops.prune_notifications(integer, integer)"

INDEXES = {
    "delivery_attempts_by_delivery": "notify.delivery_attempts (delivery_id)",
    "deliveries_by_age": "notify.deliveries (created_at)",
    "provider_events_by_age": "notify.provider_events (received_at)",
    "unrouted_events_by_age": "notify.unrouted_events (received_at)",
}

PRUNE_NOTIFICATIONS = r"""
CREATE OR REPLACE FUNCTION ops.prune_notifications(retention_days integer, max_rows integer)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    doomed bigint[];
    attempts bigint;
    deliveries bigint;
    callbacks bigint;
    unrouted bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 8 OR max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'notification retention >= 8 days, max_rows >= 1 (got %, %)', retention_days, max_rows;
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    SELECT coalesce(array_agg(id), '{}') INTO doomed FROM (
        SELECT id FROM notify.deliveries WHERE created_at < cutoff AND status <> 'pending'
        ORDER BY created_at LIMIT max_rows) oldest;
    DELETE FROM notify.delivery_attempts WHERE delivery_id = ANY (doomed);
    GET DIAGNOSTICS attempts = ROW_COUNT;
    DELETE FROM notify.deliveries WHERE id = ANY (doomed);
    GET DIAGNOSTICS deliveries = ROW_COUNT;
    DELETE FROM notify.provider_events WHERE id IN (
        SELECT id FROM notify.provider_events WHERE received_at < cutoff ORDER BY received_at LIMIT max_rows);
    GET DIAGNOSTICS callbacks = ROW_COUNT;
    DELETE FROM notify.unrouted_events WHERE event_id IN (
        SELECT event_id FROM notify.unrouted_events WHERE received_at < cutoff ORDER BY received_at LIMIT max_rows);
    GET DIAGNOSTICS unrouted = ROW_COUNT;
    RETURN jsonb_build_object('notify.deliveries', deliveries, 'notify.delivery_attempts', attempts,
                              'notify.provider_events', callbacks, 'notify.unrouted_events', unrouted);
END $$
"""


def upgrade() -> None:
    create_indexes_concurrently({f"notify.{name}": target for name, target in INDEXES.items()})
    op.execute(PRUNE_NOTIFICATIONS)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO fn_reconcile")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    for name in INDEXES:
        op.execute(f"DROP INDEX notify.{name}")
