"""A pooled connection is pinged at checkout only after resting in the pool (shared.db): one handed on within
RECENTLY_RETURNED_SECONDS costs no round trip, and a database restart while connections rested still costs
no failed statement."""

from __future__ import annotations

import time

import pytest

from shared import db
from shared.db import sql, transaction
from shared.stack import services
from tests.support.database import engine_as
from tests.support.round_trips import counting_round_trips

# Tuning, shortened so the test does not wait a real second at each step.
RESTING_SECONDS = 0.3


@pytest.fixture
def engine(database, monkeypatch):
    monkeypatch.setattr(db, "RECENTLY_RETURNED_SECONDS", RESTING_SECONDS)
    with engine_as(database, "postgres") as engine:
        engine.dispose()  # a pool another test left: connections of its own
        yield engine


def _ask(engine) -> int:
    """Round trips of one short transaction on a pooled connection, checkout included."""
    with counting_round_trips() as trips:
        with transaction(engine) as conn:
            assert conn.execute(sql("SELECT CAST(:n AS int) + 1"), {"n": 41}).scalar_one() == 42
    return trips.count


def test_a_connection_is_pinged_only_after_resting_in_the_pool(engine):
    _ask(engine)  # connects, and prepares the statement
    handed_on = _ask(engine)
    time.sleep(RESTING_SECONDS * 2)
    rested = _ask(engine)
    assert rested == handed_on + 1, "the ping is one round trip, made only after the rest"


def test_a_restart_while_connections_rest_costs_no_failed_statement(engine, database):
    _ask(engine)
    services.stop_postgres(database)
    services.restart_postgres(database)
    time.sleep(RESTING_SECONDS * 2)
    # The pooled connection died with the server: the ping finds it dead and the pool connects afresh.
    assert _ask(engine) >= 1
