"""The pool and connections of shared/db.py, on a stand-in for pg8000's connection (the integration tests run
them on PostgreSQL: test_connection_hygiene, test_pool_checkout, test_prepared_statements, and the outages)."""

from __future__ import annotations

import threading

import pytest
from pg8000.exceptions import DatabaseError, InterfaceError

from shared import db
from shared.errors import DatabaseUnavailable

SECRET = "ann.lee@example.org"


class _Context:
    def __init__(self, columns, rows) -> None:
        self.columns = [{"name": name} for name in columns] if columns else None
        self.rows = rows
        self.row_count = len(rows) if rows is not None else 1


class FakeDriver:
    """What shared.db uses of a pg8000 connection; `fail` is raised by the next statement."""

    opened = 0

    def __init__(self) -> None:
        FakeDriver.opened += 1
        self.statements: list[tuple[str, tuple]] = []
        self.fail: Exception | None = None
        self.closed = False
        self._transaction_status = None
        self._usock = None

    def register_in_adapter(self, *_args) -> None:
        pass

    def _answer(self, statement: str, values: tuple = ()) -> _Context:
        self.statements.append((statement, values))
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        if statement == "BEGIN":
            self._transaction_status = b"T"
        elif statement in ("COMMIT", "ROLLBACK"):
            self._transaction_status = b"I"
        return _Context(["id", "name"], [[1, "one"], [2, "two"]]) if statement.startswith("SELECT") else \
            _Context(None, None)

    def execute_simple(self, statement):
        return self._answer(statement)

    def execute_unnamed(self, statement, vals=(), oids=(), stream=None):
        return self._answer(statement, vals)

    # The prepared-statement layer's calls (shared.db puts it in front of every connection class).
    def prepare_statement(self, statement, oids):
        return (f"s{len(self.statements)}", None, [])

    def execute_named(self, name, params, columns, input_funcs, statement):
        return self._answer(statement, tuple(params))

    py_types: dict = {}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setattr(db, "make_params", lambda _types, values: list(values))
    FakeDriver.opened = 0
    return db.Engine(FakeDriver)


def test_parameters_go_by_name_in_the_order_the_server_numbers_them(engine):
    with engine.connect() as conn:
        rows = conn.execute(db.sql("SELECT id, name FROM t WHERE a = :a AND b = :b OR a = :a"), {"b": 2, "a": 1})
        assert conn.driver.statements[-1] == ("SELECT id, name FROM t WHERE a = $1 AND b = $2 OR a = $1", (1, 2))
    assert [(row.id, row.name) for row in rows.all()] == [(1, "one"), (2, "two")]
    assert rows.mappings().first() == {"id": 1, "name": "one"} and rows.scalars().all() == [1, 2]
    with pytest.raises(db.NotOneRow):
        rows.one()
    assert db._positional("UPDATE t SET a = %s WHERE id = %s") == "UPDATE t SET a = $1 WHERE id = $2"


def test_a_transaction_commits_and_a_failed_one_rolls_back(engine):
    with engine.begin() as conn:
        conn.execute(db.sql("UPDATE t SET a = 1"))
    driver = conn.driver
    assert [s for s, _ in driver.statements] == ["BEGIN", "UPDATE t SET a = 1", "COMMIT"]
    with pytest.raises(ValueError), engine.begin() as conn:
        conn.execute(db.sql("UPDATE t SET a = 2"))
        raise ValueError("the handler refused")
    assert [s for s, _ in driver.statements][-2:] == ["UPDATE t SET a = 2", "ROLLBACK"]
    assert FakeDriver.opened == 1, "both on the one pooled connection"


@pytest.mark.parametrize("failure, raised, broken", [
    # The server refused a value: raised as it is, and the connection, still in step, goes back to the pool.
    (DatabaseError({"C": "22P02", "M": f'invalid input syntax for type integer: "{SECRET}"'}), DatabaseError, False),
    (DatabaseError({"C": "23505", "M": "duplicate key value violates unique constraint"}), DatabaseError, False),
    # The server is going away (a restart, a failover): unavailable, and the connection is dropped.
    (DatabaseError({"C": "57P01", "M": "terminating connection due to administrator command"}),
     DatabaseUnavailable, True),
    # No answer: the socket is gone.
    (InterfaceError("network error"), DatabaseUnavailable, True),
    (ConnectionResetError(104, "Connection reset by peer"), DatabaseUnavailable, True),
    # A value the driver could not convert, part of the statement maybe sent: raised as it is (it is not an
    # outage to wait out), and the connection, in an unknown state, is dropped.
    (UnicodeEncodeError("utf-8", f"{SECRET} \ud800", 20, 21, "surrogates not allowed"), UnicodeEncodeError, True),
])
def test_a_failed_statement_is_raised_by_what_it_means_and_never_with_a_value(engine, failure, raised, broken):
    with pytest.raises(raised) as caught, engine.connect() as conn:
        conn.driver.fail = failure
        conn.execute(db.sql("SELECT id, name FROM t WHERE a = :a"), {"a": SECRET})
    assert conn.broken is broken
    if raised is DatabaseUnavailable:
        assert SECRET not in str(caught.value)
    assert (engine.resting_connections(), conn.driver.closed) == ((0, True) if broken else (1, False))
    with engine.connect() as again:  # the pool still serves
        assert again.execute(db.sql("SELECT 1")).scalar() == 1
        assert (again.driver is conn.driver) is not broken


def test_a_pool_keeps_its_size_lends_its_overflow_and_refuses_beyond_it(engine, monkeypatch):
    monkeypatch.setattr(db, "POOL_TIMEOUT_SECONDS", 0.2)
    held = [engine.connect() for _ in range(db.POOL_SIZE + db.POOL_OVERFLOW)]
    connections = [lent.__enter__() for lent in held]
    with pytest.raises(DatabaseUnavailable, match="pool exhausted"), engine.connect():
        pass
    freed = threading.Event()

    def give_one_back() -> None:
        held.pop().__exit__(None, None, None)
        freed.set()

    threading.Timer(0.05, give_one_back).start()
    with engine.connect() as waited:  # a request waits for a connection returned meanwhile
        assert freed.is_set() and waited.driver in {c.driver for c in connections}
    for lent in held:
        lent.__exit__(None, None, None)
    assert engine.resting_connections() == db.POOL_SIZE  # the overflow was closed when returned
    assert sum(c.driver.closed for c in connections) == db.POOL_OVERFLOW


def test_a_connection_past_its_age_or_dead_while_resting_is_replaced(engine, monkeypatch):
    with engine.connect() as conn:
        first = conn.driver
    monkeypatch.setattr(db, "RECENTLY_RETURNED_SECONDS", 0.0)
    first.fail = InterfaceError("network error")  # the server restarted while it rested: the ping fails
    with engine.connect() as conn:
        second = conn.driver
    assert second is not first and first.closed
    monkeypatch.setattr(db, "POOL_RECYCLE_SECONDS", -1.0)
    with engine.connect() as conn:
        assert conn.driver is not second and second.closed
