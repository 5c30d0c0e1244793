"""The price history and the rejected messages get a retention too.

What still only grew after 0018:
- fetch-price's `pricing.observations` (each source's quote, every tick, every asset) and
  `pricing.decisions` (what it made of them), and assess-margin's `risk.applied_prices` (each price it
  applied, with its sources). Measured after tests/e2e/test_price_feed.py: a tick writes per asset two
  observations (114 B each), a decision (133 B) and, when the price moved, an applied price (426 B), so
  with row headers and indexes about 1.2 KB, or 1.7 MB a day per asset at a tick a minute, for ever.
- each domain's `rejected_messages`: one row per refused message id, with its whole body (Pub/Sub allows
  10 MB). Only a faulty or hostile producer writes them, but then without bound.

- observations_by_age (fetched_at), decisions_by_age (decided_at), applied_prices_by_age (applied_at) and,
  in every schema that has a `rejected_messages`, rejected_by_age (last_seen_at): pruning walks by age.
- ops.prune_price_history(retention_days, max_rows): observations, decisions and applied prices older than
  the retention, oldest first, at most max_rows per table per call; returns the counts per table. The
  current price of each asset is `risk.asset_prices` and `pricing.asset_state`, which are never pruned. It
  refuses a retention below 2 days, the margin events' floor: a margin event and a snapshot name the
  price they were computed at, so the settings also keep the price history at least as long as both.
- ops.prune_rejected_messages(retention_days, max_rows): rejected messages last seen before the retention,
  oldest first, at most max_rows per schema per call. It refuses a retention below 8 days: while Pub/Sub
  may still redeliver a message (7 days), its row keeps counting the deliveries of the same refusal.

The schemas with a `rejected_messages` are found in the catalogue, by the migration and by the routine,
so a domain added later is covered without a new list. The indexes are built CONCURRENTLY, first, and
can be built again after a failed run, as in 0016.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations.domains import create_indexes_concurrently

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

SIGNATURES = ("ops.prune_price_history(integer, integer)", "ops.prune_rejected_messages(integer, integer)")

PRICE_HISTORY_INDEXES = {
    "pricing.observations_by_age": "pricing.observations (fetched_at)",
    "pricing.decisions_by_age": "pricing.decisions (decided_at)",
    "risk.applied_prices_by_age": "risk.applied_prices (applied_at)",
}

# The schemas holding a rejected_messages table (every domain's, see shared/migrations/domains.py).
REJECTED_SCHEMAS = """
    SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'rejected_messages' AND c.relkind = 'r' ORDER BY n.nspname"""

PRUNE_PRICE_HISTORY = r"""
CREATE OR REPLACE FUNCTION ops.prune_price_history(retention_days integer, max_rows integer)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    observations bigint;
    decisions bigint;
    applied bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 2 OR max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'price history retention >= 2 days, max_rows >= 1 (got %, %)', retention_days, max_rows;
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    DELETE FROM pricing.observations WHERE id IN (
        SELECT id FROM pricing.observations WHERE fetched_at < cutoff ORDER BY fetched_at LIMIT max_rows);
    GET DIAGNOSTICS observations = ROW_COUNT;
    DELETE FROM pricing.decisions WHERE id IN (
        SELECT id FROM pricing.decisions WHERE decided_at < cutoff ORDER BY decided_at LIMIT max_rows);
    GET DIAGNOSTICS decisions = ROW_COUNT;
    DELETE FROM risk.applied_prices WHERE price_event_id IN (
        SELECT price_event_id FROM risk.applied_prices WHERE applied_at < cutoff ORDER BY applied_at LIMIT max_rows);
    GET DIAGNOSTICS applied = ROW_COUNT;
    RETURN jsonb_build_object('pricing.observations', observations, 'pricing.decisions', decisions,
                              'risk.applied_prices', applied);
END $$
"""

PRUNE_REJECTED_MESSAGES = r"""
CREATE OR REPLACE FUNCTION ops.prune_rejected_messages(retention_days integer, max_rows integer)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    domain text;
    removed bigint;
    counts jsonb := '{}';
BEGIN
    IF retention_days IS NULL OR retention_days < 8 OR max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'rejected message retention >= 8 days, max_rows >= 1 (got %, %)', retention_days, max_rows;
    END IF;
    FOR domain IN {schemas} LOOP
        EXECUTE format('DELETE FROM %I.rejected_messages WHERE (consumer, message_id) IN (SELECT consumer, '
                       'message_id FROM %I.rejected_messages WHERE last_seen_at < $1 ORDER BY last_seen_at '
                       'LIMIT $2)', domain, domain)
            USING now() - make_interval(days => retention_days), max_rows;
        GET DIAGNOSTICS removed = ROW_COUNT;
        counts := counts || jsonb_build_object(domain || '.rejected_messages', removed);
    END LOOP;
    RETURN counts;
END $$
"""


def _indexes() -> dict[str, str]:
    schemas: list[str] = list(op.get_bind().execute(sa.text(REJECTED_SCHEMAS)).scalars())
    return {**PRICE_HISTORY_INDEXES,
            **{f"{schema}.rejected_by_age": f"{schema}.rejected_messages (last_seen_at)" for schema in schemas}}


def upgrade() -> None:
    create_indexes_concurrently(_indexes())
    op.execute(PRUNE_PRICE_HISTORY)
    op.execute(PRUNE_REJECTED_MESSAGES.replace("{schemas}", REJECTED_SCHEMAS))
    for signature in SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO fn_reconcile")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    for name in _indexes():
        op.execute(f"DROP INDEX {name}")
