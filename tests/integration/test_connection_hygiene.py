"""A statement that fails inside the driver never leaves a connection in an unknown state in the pool.

pg8000 sends and flushes Parse/Describe before it converts the parameters. When the conversion raises,
the server's reply stays unread; a pool that kept that connection would hand the next request someone
else's answer (the api then answered 500 and 404 for good requests until the connection was recycled).
These run through the platform's own engine factory against the real PostgreSQL.
"""

from datetime import datetime, timedelta, timezone

import pytest

from shared.db import DatabaseError, get_engine, is_data_error, sql, transaction
from shared.logs import format_exception_safely
from shared.settings import DatabaseSettings

EXTREME = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))  # before year 1 once in UTC


@pytest.fixture
def engine(stack):
    settings = DatabaseSettings(name="escrow", user="postgres", host="127.0.0.1",
                                port=stack.layout.postgres_port, instance_connection_name=None)
    engine = get_engine(settings)
    engine.dispose()
    yield engine
    engine.dispose()


def _ask(engine, number: int) -> int:
    with transaction(engine) as conn:
        return conn.execute(sql("SELECT CAST(:n AS int) + 1"), {"n": number}).scalar_one()


@pytest.mark.parametrize("bad_parameter", [EXTREME, "name with an unpaired surrogate \ud800"],
                         ids=["extreme-utc-offset", "unpaired-surrogate"])
def test_a_parameter_the_driver_cannot_convert_does_not_poison_the_pool(engine, bad_parameter):
    for _ in range(2):  # the reproducer sent the request twice
        with pytest.raises(Exception):  # noqa: B017 - whichever error the driver raises
            with transaction(engine) as conn:
                conn.execute(sql("SELECT :p"), {"p": bad_parameter})
    # Every later statement on the same pool gets its own answer.
    assert [_ask(engine, n) for n in range(6)] == [1, 2, 3, 4, 5, 6]


def test_an_error_the_server_reports_keeps_the_connection(engine):
    with pytest.raises(DatabaseError) as raised:
        with transaction(engine) as conn:
            conn.execute(sql("SELECT CAST('x' AS int)"))
    assert is_data_error(raised.value)
    assert _ask(engine, 41) == 42
    assert engine.resting_connections() >= 1  # reused, not discarded


def test_values_never_reach_a_logged_database_error(engine):
    canary = "-".join(("canary", "4f1d", "personal"))  # spelt apart: source lines appear in tracebacks
    with pytest.raises(DatabaseError) as raised:
        with transaction(engine) as conn:
            conn.execute(sql("SELECT CAST(:p AS int)"), {"p": canary})
    assert raised.value.args == (raised.value.args[0],) and isinstance(raised.value.args[0], dict)  # the server's
    # fields alone: the driver never adds the bound parameters to an error
    # The server's own message quotes the value; the log formatter withholds it, keeping the SQLSTATE.
    logged = format_exception_safely(raised.value)
    assert canary not in logged and "SQLSTATE 22P02" in logged
