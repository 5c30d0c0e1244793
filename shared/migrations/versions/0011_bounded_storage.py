"""Bounded storage: snapshot history partitioned by day, and pruning routines the reconciler runs.

`risk.margin_health_snapshots` becomes partitioned by `taken_at`, one partition a day; the rows
already there become one partition that ends tomorrow (UTC), and is dropped like any other once
retention passes it. The id sequence continues where it was, so `margin_events.snapshot_id` stays
unambiguous. The key is (id, taken_at), as PostgreSQL requires of a partitioned table's key.

The routines are SECURITY DEFINER, owned by the migrator (the owner of the tables), and only
fn_reconcile may call them: it gets no DELETE or DDL right of its own, and each routine refuses a
retention below its floor, so a bad setting cannot wipe what is still needed:
- ops.roll_snapshot_partitions(retention_days, days_ahead): creates the partitions of the next days,
  drops those wholly older than the retention;
- ops.prune_messaging(outbox_days, inbox_days, max_rows): published outbox rows and inbox rows older
  than their retention, in each domain schema (at most max_rows per table per call);
- ops.prune_relay_blocks(keep_blocks): relay's block hashes more than keep_blocks below its checkpoint.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Domain schemas with an inbox and an outbox (shared.migrations.domains.create_messaging_tables).
MESSAGING_SCHEMAS = ("relay", "settlement", "identity", "pricing", "risk", "notify", "compliance")

SNAPSHOT_COLUMNS = """
    chain_id bigint NOT NULL, contract text NOT NULL, escrow_id numeric(78, 0) NOT NULL, depositor text NOT NULL,
    asset_symbol text NOT NULL, collateral_amount numeric NOT NULL, obligation_usd numeric(38, 8) NOT NULL,
    price numeric NOT NULL, collateral_value_usd numeric NOT NULL, health_factor numeric NOT NULL,
    previous_tier text, tier text NOT NULL, price_event_id text NOT NULL, correlation_id text NOT NULL,
    cause_event_id text NOT NULL, taken_at timestamp with time zone NOT NULL DEFAULT now()
"""

ROLL_SNAPSHOT_PARTITIONS = r"""
CREATE OR REPLACE FUNCTION ops.roll_snapshot_partitions(retention_days integer, days_ahead integer)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
    cutoff timestamptz;
    part record;
    created integer := 0;
    dropped text[] := '{}';
BEGIN
    IF retention_days IS NULL OR retention_days < 1 OR days_ahead IS NULL OR days_ahead < 1 THEN
        RAISE EXCEPTION 'snapshot retention and days ahead must be at least 1 day (got %, %)',
            retention_days, days_ahead;
    END IF;
    -- Never wait long behind a running assessment for the parent's lock: the next run tries again.
    SET LOCAL lock_timeout = '5s';
    FOR i IN 0 .. days_ahead LOOP
        day := today + i;
        BEGIN
            EXECUTE format('CREATE TABLE IF NOT EXISTS risk.%I PARTITION OF risk.margin_health_snapshots '
                           'FOR VALUES FROM (%L) TO (%L)', 'margin_health_snapshots_p' || to_char(day, 'YYYYMMDD'),
                           day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        EXCEPTION WHEN invalid_object_definition THEN
            NULL;  -- the day is already covered (the partition of the rows from before partitioning)
        END;
    END LOOP;
    cutoff := (today - retention_days)::timestamp AT TIME ZONE 'UTC';
    FOR part IN
        SELECT c.relname,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS upper_bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'risk.margin_health_snapshots'::regclass
    LOOP
        IF part.upper_bound IS NOT NULL AND part.upper_bound <= cutoff THEN
            EXECUTE format('DROP TABLE risk.%I', part.relname);
            dropped := dropped || part.relname::text;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('ensured_days', created, 'dropped', to_jsonb(dropped));
END $$
"""

PRUNE_MESSAGING = r"""
CREATE OR REPLACE FUNCTION ops.prune_messaging(outbox_days integer, inbox_days integer, max_rows integer)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    domain text;
    removed bigint;
    counts jsonb := '{}';
BEGIN
    -- The inbox must outlive any redelivery: Pub/Sub keeps a message (and a dead letter) 7 days.
    IF outbox_days IS NULL OR outbox_days < 1 OR inbox_days IS NULL OR inbox_days < 8
       OR max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'outbox retention >= 1 day, inbox retention >= 8 days, max_rows >= 1 (got %, %, %)',
            outbox_days, inbox_days, max_rows;
    END IF;
    FOREACH domain IN ARRAY {schemas} LOOP
        EXECUTE format('DELETE FROM %I.outbox WHERE id IN (SELECT id FROM %I.outbox WHERE published_at < $1 '
                       'ORDER BY id LIMIT $2)', domain, domain)
            USING now() - make_interval(days => outbox_days), max_rows;
        GET DIAGNOSTICS removed = ROW_COUNT;
        counts := counts || jsonb_build_object(domain || '.outbox', removed);
        EXECUTE format('DELETE FROM %I.inbox WHERE (consumer, dedupe_key) IN (SELECT consumer, dedupe_key '
                       'FROM %I.inbox WHERE received_at < $1 ORDER BY received_at LIMIT $2)', domain, domain)
            USING now() - make_interval(days => inbox_days), max_rows;
        GET DIAGNOSTICS removed = ROW_COUNT;
        counts := counts || jsonb_build_object(domain || '.inbox', removed);
    END LOOP;
    RETURN counts;
END $$
"""

PRUNE_RELAY_BLOCKS = r"""
CREATE OR REPLACE FUNCTION ops.prune_relay_blocks(keep_blocks bigint)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed bigint;
BEGIN
    -- Far deeper than any reorganisation Ethereum has seen (finality is about 64 blocks).
    IF keep_blocks IS NULL OR keep_blocks < 128 THEN
        RAISE EXCEPTION 'relay must keep at least 128 block hashes below its checkpoint (got %)', keep_blocks;
    END IF;
    DELETE FROM relay.blocks b USING relay.checkpoints c
    WHERE b.chain_id = c.chain_id AND b.contract = c.contract AND b.block_number < c.block_number - keep_blocks;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END $$
"""

ROUTINES = {
    "ops.roll_snapshot_partitions(integer, integer)": ROLL_SNAPSHOT_PARTITIONS,
    "ops.prune_messaging(integer, integer, integer)": PRUNE_MESSAGING.replace(
        "{schemas}", "ARRAY[" + ", ".join(f"'{schema}'" for schema in MESSAGING_SCHEMAS) + "]"),
    "ops.prune_relay_blocks(bigint)": PRUNE_RELAY_BLOCKS,
}


def upgrade() -> None:
    op.execute("ALTER TABLE risk.margin_health_snapshots RENAME TO margin_health_snapshots_before_0011")
    # Its key becomes the partitioned table's (id, taken_at), built when it is attached.
    op.execute("ALTER TABLE risk.margin_health_snapshots_before_0011 DROP CONSTRAINT margin_health_snapshots_pkey")
    op.execute("ALTER INDEX risk.snapshots_by_escrow RENAME TO snapshots_before_0011_by_escrow")
    # Dropping the identity drops its sequence (of the same name); the new one continues after the last id.
    op.execute("ALTER TABLE risk.margin_health_snapshots_before_0011 ALTER COLUMN id DROP IDENTITY")
    op.execute("CREATE SEQUENCE risk.margin_health_snapshots_id_seq")
    op.execute("SELECT setval('risk.margin_health_snapshots_id_seq', "
               "coalesce((SELECT max(id) FROM risk.margin_health_snapshots_before_0011), 0) + 1, false)")
    op.execute(f"""CREATE TABLE risk.margin_health_snapshots (
        id bigint NOT NULL DEFAULT nextval('risk.margin_health_snapshots_id_seq'), {SNAPSHOT_COLUMNS},
        CONSTRAINT margin_health_snapshots_pkey PRIMARY KEY (id, taken_at)) PARTITION BY RANGE (taken_at)""")
    op.execute("ALTER SEQUENCE risk.margin_health_snapshots_id_seq OWNED BY risk.margin_health_snapshots.id")
    op.execute("ALTER TABLE risk.margin_health_snapshots ATTACH PARTITION risk.margin_health_snapshots_before_0011 "
               "FOR VALUES FROM (MINVALUE) TO ((date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day') "
               "AT TIME ZONE 'UTC')")
    op.execute("CREATE INDEX snapshots_by_escrow ON risk.margin_health_snapshots (escrow_id)")
    # The sequence is new: the roles that insert snapshots (and the readers) need it as they had the old one.
    op.execute("GRANT USAGE, SELECT ON SEQUENCE risk.margin_health_snapshots_id_seq TO fn_assess_margin")
    for schema in MESSAGING_SCHEMAS:
        # The inbox pruning walks by age.
        op.execute(f"CREATE INDEX IF NOT EXISTS inbox_by_age ON {schema}.inbox (received_at)")
    for signature, body in ROUTINES.items():
        op.execute(body)
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO fn_reconcile")
    op.execute("SELECT ops.roll_snapshot_partitions(36500, 7)")


def downgrade() -> None:
    raise NotImplementedError("partitioning is not undone; restore from a backup taken before 0011")
