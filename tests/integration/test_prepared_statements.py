"""Each connection keeps its statements prepared (shared.db): one round trip to run a statement again,
not pg8000's three, with the same answers, and nothing stale or unbounded left on the server."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pg8000.converters
import pytest
from pg8000.converters import TIMESTAMPTZ
from sqlalchemy import text

from shared import db
from shared.db import DatabaseError, get_engine, sql, transaction
from shared.settings import DatabaseSettings
from tests.support.round_trips import counting_round_trips


@pytest.fixture
def engine(database):
    settings = DatabaseSettings(name="escrow", user="postgres", host="127.0.0.1", port=database.postgres_port,
                                instance_connection_name=None)
    engine = get_engine(settings)
    engine.dispose()
    yield engine
    engine.dispose()


def test_a_statement_run_again_is_one_round_trip_with_its_own_answer(engine):
    statement = sql("SELECT CAST(:n AS int) * 2")
    with transaction(engine) as conn:
        conn.execute(sql("SELECT 1"))  # the transaction's BEGIN is sent; counting starts after it
        answers, trips = [], []
        for number in (1, 21, -4):
            with counting_round_trips() as counter:
                answers.append(conn.execute(statement, {"n": number}).scalar_one())
            trips.append(counter.count)
    # The first time: prepare, then bind and execute. After: bind and execute (pg8000 alone takes three).
    assert (answers, trips) == ([2, 42, -8], [2, 1, 1])


def test_a_statement_whose_table_changed_is_prepared_again(engine, owner_engine):
    with owner_engine.begin() as conn:
        conn.execute(text("CREATE TABLE public.prepared_probe (a int)"))
        conn.execute(text("INSERT INTO public.prepared_probe VALUES (1)"))
    try:
        query = sql("SELECT * FROM public.prepared_probe WHERE a >= :low")
        with transaction(engine) as conn:
            assert conn.execute(query, {"low": 0}).all() == [(1,)]
        with owner_engine.begin() as conn:
            conn.execute(text("ALTER TABLE public.prepared_probe ADD COLUMN b int DEFAULT 7"))
        # The server refuses the stale plan once ("cached plan must not change result type") ...
        with pytest.raises(DatabaseError):
            with transaction(engine) as conn:
                conn.execute(query, {"low": 0}).all()
        # ... and the statement, forgotten, is prepared afresh: the new column is there.
        with transaction(engine) as conn:
            assert conn.execute(query, {"low": 0}).all() == [(1, 7)]
    finally:
        with owner_engine.begin() as conn:
            conn.execute(text("DROP TABLE public.prepared_probe"))


def test_prepared_statements_per_connection_stay_bounded(engine, monkeypatch):
    monkeypatch.setattr(db, "PREPARED_STATEMENTS_PER_CONNECTION", 5)
    with transaction(engine) as conn:
        for n in range(20):
            assert conn.execute(sql(f"SELECT CAST(:n AS int) + {n}"), {"n": 1}).scalar_one() == 1 + n
        held = conn.execute(sql("SELECT count(*) FROM pg_prepared_statements")).scalar_one()
    assert held <= 5


def test_a_value_the_server_refuses_leaves_the_statement_prepared(engine):
    statement = sql("SELECT CAST(CAST(:v AS text) AS int)")
    with transaction(engine) as conn:
        assert conn.execute(statement, {"v": "5"}).scalar_one() == 5
    with pytest.raises(DatabaseError):
        with transaction(engine) as conn:
            conn.execute(statement, {"v": "not a number"})
    with transaction(engine) as conn:
        conn.execute(sql("SELECT 1"))
        with counting_round_trips() as counter:
            assert conn.execute(statement, {"v": "7"}).scalar_one() == 7
        assert counter.count == 1  # still prepared: bind and execute only


def test_a_statement_larger_than_the_write_buffer_is_sent_without_waiting_for_an_ack(engine):
    # pg8000 leaves Nagle's algorithm on: a 20 KB statement left in two writes and the second waited for
    # the server's delayed ACK (40 ms). Every pooled TCP connection sends at once, as libpq does.
    with transaction(engine) as conn:
        sock = conn.driver._usock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert conn.execute(sql("SELECT length(:blob)"), {"blob": "x" * 20_000}).scalar_one() == 20_000


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_timestamps_are_read_as_the_instants_the_server_wrote(engine, time_zone):
    instants = [datetime(2026, 12, 3, 10, 0, 0, 123456, UTC), datetime(2026, 12, 3, 10, tzinfo=UTC),
                datetime(2026, 12, 3, 10, 0, 0, 500000, UTC), datetime(1999, 12, 31, 23, 59, 59, 999999, UTC),
                datetime(1, 1, 1, 12, tzinfo=UTC)]
    others = ["infinity", "-infinity", "0044-03-15 12:00:00+00 BC"]
    values = [instant.isoformat() for instant in instants] + others
    as_timestamps = ("SELECT CAST(v AS timestamptz) FROM unnest(CAST(:values AS text[])) WITH ORDINALITY AS t(v, i) "
                     "ORDER BY i")
    with transaction(engine) as conn:
        conn.execute(sql(f"SET LOCAL TimeZone = '{time_zone}'"))
        assert conn.driver.pg_types[TIMESTAMPTZ] is db._read_timestamptz
        read = conn.execute(sql(as_timestamps), {"values": values}).scalars().all()
        as_text = as_timestamps.replace("CAST(v AS timestamptz)", "CAST(CAST(v AS timestamptz) AS text)")
        written = conn.execute(sql(as_text), {"values": values}).scalars().all()
    assert read[:len(instants)] == instants  # the same instants, in the session's time zone
    # pg8000's own reader agrees wherever it reads a value (it returns Kolkata's year-1 LMT offset as text);
    # infinity and BC dates are left to it.
    by_pg8000 = [pg8000.converters.timestamptz_in(value) for value in written]
    assert all(ours == theirs for ours, theirs in zip(read, by_pg8000, strict=True) if isinstance(theirs, datetime))
    assert read[len(instants):] == by_pg8000[len(instants):]
