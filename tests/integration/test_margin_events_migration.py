"""Migrations of margin events on a database that already has some, each on a fresh database on the
stack's PostgreSQL.

0014: each event ends with its content and its publication, and none is sent twice or lost (migrated to
0013, given the four kinds of event a live database holds, then to the head). 0016: the index of the
unpublished events is rebuilt by time, CONCURRENTLY, and a run after one that failed half way finishes."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import sqlalchemy
from alembic.script import ScriptDirectory

from shared.migrations.run import alembic_config, upgrade
from shared.stack.services import create_database_statement

# (event, what 0013 left of it): a snapshot and a published outbox row; a published outbox row only (its
# snapshot partition dropped); an outbox row still unpublished; nothing but the event (both pruned).
_SEED = """
INSERT INTO risk.margin_health_snapshots (id, chain_id, contract, escrow_id, depositor, asset_symbol,
    collateral_amount, obligation_usd, price, collateral_value_usd, health_factor, previous_tier, tier,
    price_event_id, correlation_id, cause_event_id, taken_at)
VALUES (1, 31337, '0xC', 1, '0xD', 'ETH', 2.5, 1900, 1700, 4250, 1.84539474, 'HEALTHY', 'WARNING', 'P1', 'c1', 'P1',
        '2026-12-01T10:00:00+00:00');
INSERT INTO risk.margin_events (event_id, chain_id, contract, escrow_id, depositor, previous_tier, tier, health_factor,
    price, snapshot_id, correlation_id, cause_event_id, occurred_at)
VALUES ('E1', 31337, '0xC', 1, '0xD', 'HEALTHY', 'WARNING', 1.84539474, 1700, 1, 'c1', 'P1',
        '2026-12-01T10:00:00+00:00'),
       ('E2', 31337, '0xC', 2, '0xD', 'HEALTHY', 'MARGIN_CALL', 1.1, 1700, 2, 'c2', 'P1', '2026-12-01T10:00:00+00:00'),
       ('E3', 31337, '0xC', 3, '0xD', 'HEALTHY', 'LIQUIDATION', 0.9, 1700, 3, 'c3', 'P1', '2026-12-01T10:00:00+00:00'),
       ('E4', 31337, '0xC', 4, '0xD', 'HEALTHY', 'WARNING', 1.4, 1700, 4, 'c4', 'P1', '2026-11-01T10:00:00+00:00');
INSERT INTO risk.outbox (dedupe_key, event_id, topic, envelope, attributes, published_at, message_id)
VALUES ('E1', 'E1', 'risk.margin-events.v1', '{"payload": {}}', '{}', '2026-12-01T10:00:01+00:00', 'm1'),
       ('E2', 'E2', 'risk.margin-events.v1', '{"payload": {"asset": "ETH", "collateral_amount": "1.0",
        "obligation_usd": "1500.00000000", "price_event_id": "P1"}}', '{}', '2026-12-01T10:00:02+00:00', 'm2'),
       ('E3', 'E3', 'risk.margin-events.v1', '{"payload": {"asset": "ETH", "collateral_amount": "0.8",
        "obligation_usd": "1500.00000000", "price_event_id": "P1"}}', '{}', NULL, NULL),
       ('R1', 'R1', 'risk.margin-events.v1', '{"event_type": "MarginAlertRetracted"}', '{}', NULL, NULL);
"""


@pytest.fixture
def fresh_database(stack):
    name = f"migration_{uuid.uuid4().hex[:8]}"
    server = sqlalchemy.create_engine(stack.layout.database_url(), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sqlalchemy.text(create_database_statement(name)))
    try:
        yield sqlalchemy.make_url(stack.layout.database_url()).set(database=name)
    finally:
        with server.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
        server.dispose()


def test_existing_margin_events_keep_their_content_and_publication(fresh_database):
    upgrade(fresh_database.render_as_string(hide_password=False), "0013")
    engine = sqlalchemy.create_engine(fresh_database)
    try:
        with engine.begin() as conn:
            for statement in _SEED.split(";"):
                if statement.strip():
                    conn.execute(sqlalchemy.text(statement))
        upgrade(fresh_database.render_as_string(hide_password=False), "head")
        with engine.connect() as conn:
            events = {row.event_id: row for row in conn.execute(sqlalchemy.text(
                "SELECT event_id, asset_symbol, collateral_amount, obligation_usd, price_event_id, published_at, "
                "message_id FROM risk.margin_events"))}
            outbox = conn.execute(sqlalchemy.text("SELECT event_id FROM risk.outbox ORDER BY event_id")).scalars().all()
    finally:
        engine.dispose()
    content = {key: (row.asset_symbol, row.collateral_amount, row.obligation_usd, row.price_event_id)
               for key, row in events.items()}
    assert content["E1"] == ("ETH", Decimal("2.5"), 1900, "P1")  # from its snapshot
    assert content["E2"] == ("ETH", Decimal("1.0"), 1500, "P1")  # from its outbox envelope
    assert content["E3"] == ("ETH", Decimal("0.8"), 1500, "P1")
    assert content["E4"] == (None, None, None, None)  # both gone; it was published long ago
    publication = {key: (row.published_at is not None, row.message_id) for key, row in events.items()}
    assert publication == {"E1": (True, "m1"), "E2": (True, "m2"),
                           "E3": (False, None),  # pending: the margin event publisher sends it
                           "E4": (True, None)}   # its time stands in for the publication time
    assert str(events["E4"].published_at).startswith("2026-11-01 10:00:00")
    # The pending event's outbox row is gone (it would be sent twice); the rest, and a retraction, stay.
    assert outbox == ["E1", "E2", "R1"]


def _unpublished_indexes(conn) -> list[tuple[str, bool, str]]:
    return [tuple(row) for row in conn.execute(sqlalchemy.text(
        "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'risk.margin_events'::regclass AND c.relname LIKE 'margin_events_unpublished%'"))]


def test_a_rerun_of_0016_after_a_failed_index_build_rebuilds_the_index_by_time(fresh_database):
    url = fresh_database.render_as_string(hide_password=False)
    upgrade(url, "0015")
    engine = sqlalchemy.create_engine(fresh_database)
    try:
        with engine.begin() as conn:
            # What a run that failed after starting its build leaves: an index under the new name that is
            # not the one wanted (a CONCURRENTLY build that fails leaves an invalid one).
            conn.execute(sqlalchemy.text(
                "CREATE INDEX margin_events_unpublished_by_time ON risk.margin_events (event_id)"))
            assert [name for name, _valid, _definition in _unpublished_indexes(conn)] == [
                "margin_events_unpublished", "margin_events_unpublished_by_time"]
        upgrade(url, "head")
        with engine.connect() as conn:
            indexes = _unpublished_indexes(conn)
            version = conn.execute(sqlalchemy.text("SELECT version_num FROM public.alembic_version")).scalar_one()
    finally:
        engine.dispose()
    [(name, valid, definition)] = indexes
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert (name, valid, version) == ("margin_events_unpublished_by_time", True, head)
    assert definition.endswith("USING btree (occurred_at) WHERE (published_at IS NULL)")
