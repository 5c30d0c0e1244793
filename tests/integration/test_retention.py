"""Storage stays bounded: the retention routines the reconciler runs (migrations 0011, 0017, 0018, 0019),
on PostgreSQL.

Each test works inside one transaction it rolls back, as fn_reconcile (SET ROLE), so the shared test
database keeps its partitions and rows; the reconciler's own pass (`retention.prune`) commits, on rows of
its own. Checked: what is past retention goes, what is within it (or unpublished, or pending) stays, values
below the floors are refused, and fn_reconcile can delete nothing itself.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy.exc import DBAPIError

from shared.reconcile import retention
from shared.reconcile.settings import ReconcileSettings
from tests.support.database import engine_as


@contextmanager
def as_reconciler(owner_engine):
    with owner_engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


def _run(conn, statement: str, **parameters):
    conn.execute(sqlalchemy.text("SET LOCAL ROLE fn_reconcile"))
    result = conn.execute(sqlalchemy.text(statement), parameters).scalar_one()
    conn.execute(sqlalchemy.text("RESET ROLE"))
    return result


def _partitions(conn) -> set[str]:
    return set(conn.execute(sqlalchemy.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'risk.margin_health_snapshots'::regclass")).scalars())


def _snapshot(conn, taken_at: datetime) -> int:
    return conn.execute(sqlalchemy.text(
        "INSERT INTO risk.margin_health_snapshots (chain_id, contract, escrow_id, depositor, asset_symbol, "
        "collateral_amount, obligation_usd, price, collateral_value_usd, health_factor, tier, price_event_id, "
        "correlation_id, cause_event_id, taken_at) VALUES (1, 'c', 1, 'd', 'ETH', 1, 1, 1, 1, 1, 'HEALTHY', "
        "'p', 'x', 'y', :t) RETURNING id"), {"t": taken_at}).scalar_one()


def test_snapshot_partitions_are_made_ahead_and_dropped_past_retention(owner_engine):
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with as_reconciler(owner_engine) as conn:
        # Stand in for a database partitioned long ago: the pre-partitioning rows' partition goes away,
        # an old day's partition with a row, and today's (the routine makes it once nothing covers it).
        conn.execute(sqlalchemy.text(
            "ALTER TABLE risk.margin_health_snapshots DETACH PARTITION risk.margin_health_snapshots_before_0011"))
        conn.execute(sqlalchemy.text(
            "CREATE TABLE risk.margin_health_snapshots_p20010101 PARTITION OF risk.margin_health_snapshots "
            "FOR VALUES FROM ('2001-01-01 00:00+00') TO ('2001-01-02 00:00+00')"))
        old_id = _snapshot(conn, datetime(2001, 1, 1, 12, tzinfo=UTC))
        done = _run(conn, "SELECT ops.roll_snapshot_partitions(30, 7)")
        assert done["dropped"] == ["margin_health_snapshots_p20010101"]
        days = {f"margin_health_snapshots_p{(today + timedelta(days=i)):%Y%m%d}" for i in range(8)}
        assert days <= _partitions(conn)
        recent_id = _snapshot(conn, today + timedelta(hours=1))
        ids = set(conn.execute(sqlalchemy.text("SELECT id FROM risk.margin_health_snapshots")).scalars())
        assert recent_id in ids and old_id not in ids and recent_id > old_id  # one sequence across partitions
        # Run again: nothing more to make or drop.
        assert _run(conn, "SELECT ops.roll_snapshot_partitions(30, 7)")["dropped"] == []


def test_a_snapshot_lands_in_its_days_partition(owner_engine):
    with as_reconciler(owner_engine) as conn:
        _run(conn, "SELECT ops.roll_snapshot_partitions(30, 7)")
        # Three days on is past the partition of the rows from before 0011 (it ends tomorrow, UTC).
        later = datetime.now(UTC) + timedelta(days=3)
        _snapshot(conn, later)
        where = conn.execute(sqlalchemy.text(
            "SELECT tableoid::regclass::text FROM risk.margin_health_snapshots WHERE taken_at = :t"),
            {"t": later}).scalar_one()
        assert where == f"risk.margin_health_snapshots_p{later:%Y%m%d}"


def _outbox_row(conn, schema: str, key: str, published_days_ago: float | None) -> None:
    conn.execute(sqlalchemy.text(
        f"INSERT INTO {schema}.outbox (dedupe_key, event_id, topic, envelope, attributes, published_at) "
        "VALUES (:k, :k, 't', '{}', '{}', CASE WHEN CAST(:d AS float) IS NULL THEN NULL "
        "ELSE now() - make_interval(secs => CAST(:d AS float) * 86400) END)"), {"k": key, "d": published_days_ago})


def _inbox_row(conn, schema: str, key: str, days_ago: float) -> None:
    conn.execute(sqlalchemy.text(
        f"INSERT INTO {schema}.inbox (consumer, dedupe_key, event_id, event_type, outcome, received_at) "
        "VALUES ('retention-test', :k, :k, 'E', 'applied', now() - make_interval(secs => :d * 86400))"),
        {"k": key, "d": days_ago})


def test_published_outbox_and_old_inbox_rows_are_pruned_and_nothing_else(owner_engine):
    with as_reconciler(owner_engine) as conn:
        for schema in ("settlement", "risk"):
            _outbox_row(conn, schema, f"{schema}-old-published", 10)
            _outbox_row(conn, schema, f"{schema}-recent-published", 1)
            _outbox_row(conn, schema, f"{schema}-old-unpublished", None)
            _inbox_row(conn, schema, f"{schema}-old-seen", 20)
            _inbox_row(conn, schema, f"{schema}-recent-seen", 9)
        counts = _run(conn, "SELECT ops.prune_messaging(7, 14, 1000)")
        assert counts["settlement.outbox"] >= 1 and counts["risk.inbox"] >= 1
        for schema in ("settlement", "risk"):
            kept = set(conn.execute(sqlalchemy.text(
                f"SELECT dedupe_key FROM {schema}.outbox WHERE dedupe_key LIKE :p"), {"p": f"{schema}-%"}).scalars())
            assert kept == {f"{schema}-recent-published", f"{schema}-old-unpublished"}
            seen = set(conn.execute(sqlalchemy.text(
                f"SELECT dedupe_key FROM {schema}.inbox WHERE consumer = 'retention-test'")).scalars())
            assert seen == {f"{schema}-recent-seen"}


def test_max_rows_bounds_one_call(owner_engine):
    with as_reconciler(owner_engine) as conn:
        for i in range(5):
            _outbox_row(conn, "notify", f"notify-bounded-{i}", 30)
        assert _run(conn, "SELECT ops.prune_messaging(7, 14, 2)")["notify.outbox"] == 2


def _margin_event(conn, key: str, days_ago: float, published: bool, contract: str = "retention-test") -> None:
    conn.execute(sqlalchemy.text(
        "INSERT INTO risk.margin_events (event_id, chain_id, contract, escrow_id, depositor, previous_tier, tier, "
        "health_factor, price, correlation_id, cause_event_id, occurred_at, published_at, message_id) "
        "VALUES (:k, 31337, :contract, 1, 'd', 'HEALTHY', 'WARNING', 1.3, 1700, :k, 'p', "
        "now() - make_interval(secs => :d * 86400), CASE WHEN :published THEN now() END, "
        "CASE WHEN :published THEN 'm' END)"), {"k": key, "d": days_ago, "published": published, "contract": contract})


def _margin_events_left(conn, contract: str = "retention-test") -> set[str]:
    return set(conn.execute(sqlalchemy.text(
        "SELECT event_id FROM risk.margin_events WHERE contract = :contract"), {"contract": contract}).scalars())


def _delivery(conn, key: str, days_ago: float, status: str, attempts: int = 1) -> int:
    delivery_id = conn.execute(sqlalchemy.text(
        "INSERT INTO notify.deliveries (event_id, event_type, channel, user_id, recipient, status, correlation_id, "
        "payload, created_at, updated_at) VALUES (:k, 'MarginTierChanged', 'email', 'retention-test', 'a@b.c', "
        ":status, :k, '{}', now() - make_interval(secs => :d * 86400), now() - make_interval(secs => :d * 86400)) "
        "RETURNING id"), {"k": key, "d": days_ago, "status": status}).scalar_one()
    for attempt in range(1, attempts + 1):
        conn.execute(sqlalchemy.text(
            "INSERT INTO notify.delivery_attempts (delivery_id, attempt, outcome, started_at) "
            "VALUES (:id, :attempt, 'sent', now())"), {"id": delivery_id, "attempt": attempt})
    return delivery_id


def _callback(conn, key: str, days_ago: float) -> None:
    conn.execute(sqlalchemy.text(
        "INSERT INTO notify.provider_events (provider, provider_event_id, event, body, received_at) "
        "VALUES ('sendgrid', :k, 'delivered', '{}', now() - make_interval(secs => :d * 86400))"),
        {"k": key, "d": days_ago})


def _unrouted(conn, key: str, days_ago: float) -> None:
    conn.execute(sqlalchemy.text(
        "INSERT INTO notify.unrouted_events (event_id, wallet, correlation_id, received_at) "
        "VALUES (:k, '0xw', :k, now() - make_interval(secs => :d * 86400))"), {"k": key, "d": days_ago})


def _keys_left(conn, queries: dict[str, str], prefix: str) -> dict[str, set[str]]:
    """Each query's keys (its one column) that start with `prefix` (its :p)."""
    return {name: set(conn.execute(sqlalchemy.text(query), {"p": f"{prefix}%"}).scalars())
            for name, query in queries.items()}


def _notifications_left(conn, prefix: str) -> dict[str, set[str]]:
    return _keys_left(conn, {
        "deliveries": "SELECT event_id FROM notify.deliveries WHERE event_id LIKE :p",
        "attempts": "SELECT d.event_id || '#' || a.attempt FROM notify.delivery_attempts a "
                    "JOIN notify.deliveries d ON d.id = a.delivery_id WHERE d.event_id LIKE :p",
        "callbacks": "SELECT provider_event_id FROM notify.provider_events WHERE provider_event_id LIKE :p",
        "unrouted": "SELECT event_id FROM notify.unrouted_events WHERE event_id LIKE :p",
    }, prefix)


def test_notifications_past_their_retention_are_pruned_with_their_attempts_and_pending_ones_kept(owner_engine):
    with as_reconciler(owner_engine) as conn:
        _delivery(conn, "n-old-delivered", 100, "delivered", attempts=2)
        _delivery(conn, "n-old-failed", 100, "failed", attempts=3)
        _delivery(conn, "n-old-pending", 100, "pending")  # still owed to the user
        _delivery(conn, "n-recent-sent", 80, "sent")
        _callback(conn, "n-old-callback", 100)
        _callback(conn, "n-recent-callback", 80)
        _unrouted(conn, "n-old-unrouted", 100)
        _unrouted(conn, "n-recent-unrouted", 80)
        counts = _run(conn, "SELECT ops.prune_notifications(90, 1000)")
        assert counts["notify.deliveries"] >= 2 and counts["notify.delivery_attempts"] >= 5
        assert _notifications_left(conn, "n-") == {
            "deliveries": {"n-old-pending", "n-recent-sent"}, "attempts": {"n-old-pending#1", "n-recent-sent#1"},
            "callbacks": {"n-recent-callback"}, "unrouted": {"n-recent-unrouted"}}


def test_notifications_are_pruned_oldest_first_and_max_rows_bounds_one_call(owner_engine):
    with as_reconciler(owner_engine) as conn:
        conn.execute(sqlalchemy.text("DELETE FROM notify.delivery_attempts"))
        conn.execute(sqlalchemy.text("DELETE FROM notify.deliveries"))
        for age in (10, 20, 30, 40):
            _delivery(conn, f"b-{age}-days-ago", age, "delivered")
        counts = _run(conn, "SELECT ops.prune_notifications(8, 2)")
        assert (counts["notify.deliveries"], counts["notify.delivery_attempts"]) == (2, 2)
        assert _notifications_left(conn, "b-")["deliveries"] == {"b-10-days-ago", "b-20-days-ago"}


@pytest.fixture
def reconciler_engine(database):
    with engine_as(database, "fn_reconcile") as engine:
        yield engine


@pytest.mark.parametrize("budget_seconds, left", [(60.0, 0), (0.0, 3)])
def test_a_run_deletes_margin_events_and_notifications_in_rounds_until_none_is_left_or_its_time_is_up(
        owner_engine, reconciler_engine, monkeypatch, budget_seconds, left):
    """Five of each past the retention, two a round: the run's rounds delete them all; with no time, one round."""
    key = f"retention-rounds-{uuid.uuid4().hex[:8]}"
    with owner_engine.begin() as conn:
        for i in range(5):
            _margin_event(conn, f"{key}-{i}", 100, True, key)
            _delivery(conn, f"{key}-{i}", 100, "delivered")
    monkeypatch.setattr(retention, "PRUNE_ROUNDS_SECONDS", budget_seconds)
    tuning = ReconcileSettings(grace_seconds=120, redrive_max=3, sweep_batch=10, prune_max_rows=2)
    try:
        done = retention.prune(reconciler_engine, tuning)
        with owner_engine.connect() as conn:
            assert len(_margin_events_left(conn, key)) == left
            assert len(_notifications_left(conn, key)["deliveries"]) == left
        assert done["margin_events"]["risk.margin_events"] >= 5 - left
        assert done["notifications"]["notify.deliveries"] >= 5 - left
        assert retention.rows_removed(done) >= 2 * (5 - left)
    finally:
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text("DELETE FROM risk.margin_events WHERE contract = :c"), {"c": key})
            conn.execute(sqlalchemy.text("DELETE FROM notify.delivery_attempts WHERE delivery_id IN "
                                         "(SELECT id FROM notify.deliveries WHERE event_id LIKE :p)"), {"p": f"{key}%"})
            conn.execute(sqlalchemy.text("DELETE FROM notify.deliveries WHERE event_id LIKE :p"), {"p": f"{key}%"})


def test_published_margin_events_past_their_retention_are_pruned_and_nothing_else(owner_engine):
    with as_reconciler(owner_engine) as conn:
        _margin_event(conn, "old-published", 100, True)
        _margin_event(conn, "old-unpublished", 100, False)  # still the outbox row of its alert
        _margin_event(conn, "recent-published", 80, True)
        assert _run(conn, "SELECT ops.prune_margin_events(90, 1000)") >= 1
        assert _margin_events_left(conn) == {"old-unpublished", "recent-published"}


def test_margin_events_are_pruned_oldest_first_and_max_rows_bounds_one_call(owner_engine):
    with as_reconciler(owner_engine) as conn:
        conn.execute(sqlalchemy.text("DELETE FROM risk.margin_events WHERE occurred_at < now() - interval '3 days'"))
        for age in (10, 20, 30, 40):
            _margin_event(conn, f"published-{age}-days-ago", age, True)
        assert _run(conn, "SELECT ops.prune_margin_events(5, 2)") == 2
        assert _margin_events_left(conn) == {"published-10-days-ago", "published-20-days-ago"}


def _price_history(conn, key: str, days_ago: float) -> None:
    """One fetch of `key`'s asset: a source's observation, the decision, and the price assess-margin applied."""
    at = {"k": key, "d": days_ago}
    conn.execute(sqlalchemy.text(
        "INSERT INTO pricing.observations (fetch_id, asset, source, price, status, fetched_at) VALUES "
        "(gen_random_uuid(), :k, 'coingecko', 1700, 'ok', now() - make_interval(secs => :d * 86400))"), at)
    conn.execute(sqlalchemy.text(
        "INSERT INTO pricing.decisions (fetch_id, asset, status, price, reason, published_event_id, decided_at) "
        "VALUES (gen_random_uuid(), :k, 'published', 1700, 'fresh', :k, now() - make_interval(secs => :d * 86400))"),
        at)
    conn.execute(sqlalchemy.text(
        "INSERT INTO risk.applied_prices (price_event_id, asset_symbol, price, sequence, provenance, observed_at, "
        "applied_at) VALUES (:k, :k, 1700, 1, '{}', now(), now() - make_interval(secs => :d * 86400))"), at)


def _price_history_left(conn, prefix: str) -> dict[str, set[str]]:
    return _keys_left(conn, {
        "observations": "SELECT asset FROM pricing.observations WHERE asset LIKE :p",
        "decisions": "SELECT asset FROM pricing.decisions WHERE asset LIKE :p",
        "applied": "SELECT price_event_id FROM risk.applied_prices WHERE price_event_id LIKE :p",
    }, prefix)


def test_price_history_past_its_retention_is_pruned_oldest_first_and_the_current_price_kept(owner_engine):
    with as_reconciler(owner_engine) as conn:
        current = conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.asset_prices")).scalar_one()
        for table, at in (("pricing.observations", "fetched_at"), ("pricing.decisions", "decided_at"),
                          ("risk.applied_prices", "applied_at")):  # only this test's rows are past 3 days
            conn.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE {at} < now() - interval '3 days'"))
        for age in (100, 110, 120):
            _price_history(conn, f"ph-{age}-days-ago", age)
        _price_history(conn, "ph-80-days-ago", 80)
        counts = _run(conn, "SELECT ops.prune_price_history(90, 2)")  # the two oldest of each table
        assert counts == {"pricing.observations": 2, "pricing.decisions": 2, "risk.applied_prices": 2}
        left = {"ph-100-days-ago", "ph-80-days-ago"}
        assert _price_history_left(conn, "ph-") == {"observations": left, "decisions": left, "applied": left}
        assert _run(conn, "SELECT ops.prune_price_history(90, 1000)")["risk.applied_prices"] >= 1
        left = {"ph-80-days-ago"}
        assert _price_history_left(conn, "ph-") == {"observations": left, "decisions": left, "applied": left}
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.asset_prices")).scalar_one() == current


def _rejected(conn, schema: str, key: str, days_ago: float) -> None:
    conn.execute(sqlalchemy.text(
        f"INSERT INTO {schema}.rejected_messages (consumer, message_id, reason, body, attributes, first_seen_at, "
        "last_seen_at) VALUES ('retention-test', :k, 'not JSON', 'x', '{}', now() - make_interval(secs => 9e6), "
        "now() - make_interval(secs => :d * 86400))"), {"k": key, "d": days_ago})


def test_rejected_messages_last_seen_before_their_retention_are_pruned_in_every_schema(owner_engine):
    with as_reconciler(owner_engine) as conn:
        schemas = conn.execute(sqlalchemy.text(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'rejected_messages'")).scalars()
        schemas = sorted(schemas)
        assert {"settlement", "risk", "notify", "pricing", "compliance", "identity", "relay"} <= set(schemas)
        for schema in schemas:
            _rejected(conn, schema, "old", 100)
            _rejected(conn, schema, "old-but-seen-again", 10)  # first seen long ago, redelivered lately
        counts = _run(conn, "SELECT ops.prune_rejected_messages(90, 1000)")
        assert {table for table, rows in counts.items() if rows >= 1} == {f"{s}.rejected_messages" for s in schemas}
        for schema in schemas:
            assert set(conn.execute(sqlalchemy.text(
                f"SELECT message_id FROM {schema}.rejected_messages WHERE consumer = 'retention-test'")).scalars()
            ) == {"old-but-seen-again"}


def test_rejected_messages_max_rows_bounds_one_call_per_schema(owner_engine):
    with as_reconciler(owner_engine) as conn:
        for i in range(3):
            _rejected(conn, "risk", f"bounded-{i}", 30 + i)
        assert _run(conn, "SELECT ops.prune_rejected_messages(8, 2)")["risk.rejected_messages"] == 2
        assert set(conn.execute(sqlalchemy.text(
            "SELECT message_id FROM risk.rejected_messages WHERE consumer = 'retention-test'")).scalars()
        ) == {"bounded-0"}


def test_a_run_prunes_the_price_history_and_the_rejected_messages(owner_engine, reconciler_engine):
    key = f"retention-run-{uuid.uuid4().hex[:8]}"
    with owner_engine.begin() as conn:
        _price_history(conn, key, 100)
        _rejected(conn, "notify", key, 100)
    tuning = ReconcileSettings(grace_seconds=120, redrive_max=3, sweep_batch=10)
    try:
        done = retention.prune(reconciler_engine, tuning)
        with owner_engine.connect() as conn:
            assert _price_history_left(conn, key) == {"observations": set(), "decisions": set(), "applied": set()}
            assert conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM notify.rejected_messages WHERE message_id = :k"), {"k": key}).scalar_one() == 0
        assert done["price_history"]["risk.applied_prices"] >= 1
        assert done["rejected_messages"]["notify.rejected_messages"] >= 1
        assert retention.rows_removed(done) >= 4
    finally:
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text("DELETE FROM pricing.observations WHERE asset = :k"), {"k": key})
            conn.execute(sqlalchemy.text("DELETE FROM pricing.decisions WHERE asset = :k"), {"k": key})
            conn.execute(sqlalchemy.text("DELETE FROM risk.applied_prices WHERE price_event_id = :k"), {"k": key})
            conn.execute(sqlalchemy.text("DELETE FROM notify.rejected_messages WHERE message_id = :k"), {"k": key})


def test_block_hashes_deeper_than_the_horizon_are_pruned(owner_engine):
    with as_reconciler(owner_engine) as conn:
        conn.execute(sqlalchemy.text(
            "INSERT INTO relay.checkpoints (chain_id, contract, block_number, block_hash, range_size, "
            "range_successes) VALUES (999, 'retention-test', 20000, '0xh', 100, 0)"))
        conn.execute(sqlalchemy.text(
            "INSERT INTO relay.blocks (chain_id, contract, block_number, block_hash) "
            "SELECT 999, 'retention-test', n, '0x' || n FROM generate_series(19000, 20000, 100) AS n"))
        assert _run(conn, "SELECT ops.prune_relay_blocks(500)") == 5  # 19000..19400 are below 19500
        kept = conn.execute(sqlalchemy.text(
            "SELECT min(block_number) FROM relay.blocks WHERE contract = 'retention-test'")).scalar_one()
        assert kept == 19500


@pytest.mark.parametrize("statement, floor", [
    ("SELECT ops.roll_snapshot_partitions(0, 7)", "at least 1 day"),
    ("SELECT ops.roll_snapshot_partitions(30, 0)", "at least 1 day"),
    ("SELECT ops.prune_messaging(0, 14, 10)", "outbox retention >= 1 day"),
    ("SELECT ops.prune_messaging(7, 7, 10)", "inbox retention >= 8 days"),
    ("SELECT ops.prune_messaging(7, 14, 0)", "max_rows >= 1"),
    ("SELECT ops.prune_messaging(NULL, 14, 10)", "outbox retention"),
    ("SELECT ops.prune_relay_blocks(10)", "at least 128"),
    ("SELECT ops.prune_margin_events(1, 10)", "margin event retention >= 2 days"),
    ("SELECT ops.prune_margin_events(NULL, 10)", "margin event retention >= 2 days"),
    ("SELECT ops.prune_margin_events(90, 0)", "max_rows >= 1"),
    ("SELECT ops.prune_notifications(7, 10)", "notification retention >= 8 days"),
    ("SELECT ops.prune_notifications(NULL, 10)", "notification retention >= 8 days"),
    ("SELECT ops.prune_notifications(90, 0)", "max_rows >= 1"),
    ("SELECT ops.prune_price_history(1, 10)", "price history retention >= 2 days"),
    ("SELECT ops.prune_price_history(NULL, 10)", "price history retention >= 2 days"),
    ("SELECT ops.prune_price_history(90, 0)", "max_rows >= 1"),
    ("SELECT ops.prune_rejected_messages(7, 10)", "rejected message retention >= 8 days"),
    ("SELECT ops.prune_rejected_messages(NULL, 10)", "rejected message retention >= 8 days"),
    ("SELECT ops.prune_rejected_messages(90, 0)", "max_rows >= 1"),
])
def test_values_below_the_floors_are_refused_with_the_reason(owner_engine, statement, floor):
    with as_reconciler(owner_engine) as conn, pytest.raises(DBAPIError, match=floor):
        _run(conn, statement)


@pytest.mark.parametrize("statement", [
    "DELETE FROM risk.outbox",
    "DELETE FROM relay.blocks",
    "DELETE FROM risk.margin_events",
    "DELETE FROM notify.deliveries",
    "DELETE FROM pricing.observations",
    "DELETE FROM pricing.decisions",
    "DELETE FROM risk.applied_prices",
    "DELETE FROM settlement.rejected_messages",
    "DROP TABLE risk.margin_health_snapshots_before_0011",
])
def test_the_reconciler_may_not_delete_by_itself(owner_engine, statement):
    with as_reconciler(owner_engine) as conn, pytest.raises(DBAPIError, match="permission denied|must be owner"):
        conn.execute(sqlalchemy.text("SET LOCAL ROLE fn_reconcile"))
        conn.execute(sqlalchemy.text(statement))
