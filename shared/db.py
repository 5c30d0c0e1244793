"""The database layer: a pool of pg8000 connections per instance, and statements written as SQL.

Connections are made over TCP locally and by the Cloud SQL Python Connector with IAM auth in GCP. The pool
is created lazily on first use and cached per function instance, so a cold start that never touches the
database pays nothing and warm invocations reuse the pool.

Why not SQLAlchemy at run time (it stays for the migrations and the tests): measured on this machine,
importing it took 0.12-0.13 s of every function's cold start, on top of what functions-framework, pg8000 and
the publisher load, and its first connection asked the server four questions before the first statement.
What the platform used of it is here: a small pool with SQLAlchemy's settings (below), connections that
run SQL text with `:name` parameters, and results read by column name.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeVar, cast

import pg8000.dbapi
from pg8000.converters import TIMESTAMPTZ, make_params, timestamptz_in
from pg8000.exceptions import DatabaseError, InterfaceError
from pg8000.native import to_statement

__all__ = ["DatabaseError"]  # the driver's, raised for every error the server reports

from shared.errors import DatabaseUnavailable
from shared.settings import DatabaseSettings

T = TypeVar("T")
log = logging.getLogger(__name__)

# A 2nd-gen instance serves a few concurrent requests at most; two warm connections cover it without
# exhausting Cloud SQL's connection limit when the function scales out.
POOL_SIZE = 2
# Bursts may open two more, closed again when returned.
POOL_OVERFLOW = 2
# Waiting longer than this for a pooled connection means the instance is overloaded: fail and let Pub/Sub
# retry instead of holding the message.
POOL_TIMEOUT_SECONDS = 10
# Cloud SQL and proxies drop idle connections; recycle before that happens.
POOL_RECYCLE_SECONDS = 1800

# Give up on an unreachable server quickly; the message is retried by Pub/Sub, not by us.
CONNECT_TIMEOUT_SECONDS = 5
# pg8000's `timeout` bounds connecting *and every socket read*, so over TCP it must also cover the
# longest statement (assess-margin's pass over 100k positions takes seconds). A refused connection
# still fails at once; only a silently unreachable host waits this long.
TCP_SOCKET_TIMEOUT_SECONDS = 60

# Driver failures that mean the connection is lost (the socket reset, closed or timed out; the server's reply
# cut short).
CONNECTION_LOST = (InterfaceError, OSError, EOFError, struct.error)
# Server errors that mean the connection or the server is going away (connection exception, insufficient
# resources, operator intervention: a restart, a failover): the database is unavailable, not the data wrong.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def tls_request(host: str | None) -> bool | None:
    """pg8000's `ssl_context` for a server reached over TCP at `host`.

    None, pg8000's default, asks the server for TLS and goes on in plain text when it declines. Asking
    costs a round trip, and pg8000 builds a default SSL context for it each time, loading the system's
    CA store: 18 ms of every new connection, measured here. On loopback nothing crosses a wire, so
    nothing is asked (False); any other host keeps the default.
    """
    if host == "localhost":
        return False
    try:
        return False if ipaddress.ip_address(host or "").is_loopback else None
    except ValueError:  # a host name
        return None


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of an error the server reported (pg8000 carries the server's fields as a dict)."""
    fields = error.args[0] if isinstance(error, DatabaseError) and error.args else None
    return fields.get("C") if isinstance(fields, dict) else None


def is_data_error(error: BaseException) -> bool:
    """The server refused a value (SQLSTATE class 22: out of range, invalid text representation...)."""
    return (sqlstate(error) or "").startswith("22")


def constraint_violated(error: BaseException) -> bool:
    """The server refused a write that breaks a constraint (SQLSTATE class 23: unique, foreign key...)."""
    return (sqlstate(error) or "").startswith("23")


def server_answered(error: BaseException) -> bool:
    """True for an error the server reported (pg8000 has then read its reply up to ReadyForQuery)."""
    return sqlstate(error) is not None


@dataclass(frozen=True)
class Statement:
    """A statement written as SQL with `:name` parameters, as the server receives it (`$1`, `$2`...)."""

    text: str
    native: str
    values: Callable[[Mapping[str, Any]], tuple]


@functools.lru_cache(maxsize=1024)
def sql(statement: str) -> Statement:
    """A statement written as SQL, with `:name` parameters, ready to execute; built once per distinct text.

    The platform's statements are SQL text: what runs is what is read, and nothing is compiled on an
    instance's first request (9 SQLAlchemy expressions compiled in screen-compliance's first registration
    took 0.045 s under the profiler).
    """
    native, values = to_statement(statement)
    return Statement(statement, native, values)


@functools.lru_cache(maxsize=256)
def _positional(statement: str) -> str:
    """A statement with the driver's `%s` placeholders, numbered (`$1`, `$2`...) as the server takes them."""
    parts = statement.split("%s")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, start=1))


@functools.lru_cache(maxsize=256)
def _row_type(columns: tuple[str, ...]) -> type:
    """A row's type for these columns: a tuple whose items are also read by name (`row.id`)."""
    return collections.namedtuple("Row", columns, rename=True)  # type: ignore[misc]


class NotOneRow(RuntimeError):
    """A statement expected to return exactly one row returned none or several."""


class Result:
    """A statement's rows (none without RETURNING or a SELECT) and how many rows it touched."""

    def __init__(self, columns: Sequence[str], rows: list | None, rowcount: int) -> None:
        self.columns = tuple(columns)
        self._rows = rows or []
        self.rowcount = rowcount

    def all(self) -> list:
        row = _row_type(self.columns)
        return [row(*values) for values in self._rows]

    def __iter__(self) -> Iterator:
        return iter(self.all())

    def tuples(self) -> Result:
        return self

    def first(self) -> Any:
        return _row_type(self.columns)(*self._rows[0]) if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise NotOneRow(f"expected one row, the statement returned {len(self._rows)}")
        return self.first()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> Rows:
        """The first column of each row."""
        return Rows(values[0] for values in self._rows)

    def mappings(self) -> Rows:
        """Each row as a dict, column name -> value."""
        return Rows(dict(zip(self.columns, values, strict=True)) for values in self._rows)


class Rows(list):
    """A result's rows in one form (dicts, or the first column's values)."""

    def all(self) -> list:
        return list(self)

    def first(self) -> Any:
        return self[0] if self else None

    def one(self) -> Any:
        if len(self) != 1:
            raise NotOneRow(f"expected one row, the statement returned {len(self)}")
        return self[0]


# Named statements each connection keeps prepared (least recently used ones are closed beyond this).
PREPARED_STATEMENTS_PER_CONNECTION = 256
# "cached plan must not change result type": a table under a prepared statement changed (a migration).
STALE_PREPARED_STATEMENT = "0A000"


class _PreparedStatementsMixin:
    """pg8000 runs every statement with parameters as Parse, Describe, then Bind/Execute: three round trips,
    each time. This keeps each distinct statement text prepared once per connection (named), so running it
    again is one round trip (Bind/Execute); statements without parameters go as one simple query. The
    parameters are converted before anything is sent, so a value pg8000 cannot convert leaves the
    protocol in step. A statement the server calls stale (a migration changed a table under it) is
    forgotten and prepared afresh next time; any other error leaves it prepared, as it is still valid."""

    _prepared: OrderedDict

    def execute_unnamed(self, statement, vals=(), oids=(), stream=None):
        core = cast(Any, self)
        if stream is not None:
            return super().execute_unnamed(statement, vals=vals, oids=oids, stream=stream)  # type: ignore[misc]
        if not vals:
            return core.execute_simple(statement)
        params = make_params(core.py_types, vals)
        key = (statement, tuple(oids or ()))
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = core.prepare_statement(statement, list(oids or ()))
            self._prepared[key] = prepared
            if len(self._prepared) > PREPARED_STATEMENTS_PER_CONNECTION:
                _, (oldest_name, _columns, _funcs) = self._prepared.popitem(last=False)
                core.close_prepared_statement(oldest_name)
        else:
            self._prepared.move_to_end(key)
        name, columns, input_funcs = prepared
        try:
            return core.execute_named(name, params, columns, input_funcs, statement)
        except pg8000.dbapi.DatabaseError as exc:
            if sqlstate(exc) == STALE_PREPARED_STATEMENT:  # its table changed; it stays dead on the server
                del self._prepared[key]
            raise


_PREPARING_CLASSES: dict[type, type] = {}


def _with_prepared_statements(connection_class: type) -> type:
    """The driver's connection class with _PreparedStatementsMixin in front (one per class: TCP, connector)."""
    if connection_class not in _PREPARING_CLASSES:
        _PREPARING_CLASSES[connection_class] = type(
            f"Prepared{connection_class.__name__}", (_PreparedStatementsMixin, connection_class), {})
    return _PREPARING_CLASSES[connection_class]


def _send_without_delay(driver: Any) -> None:
    """On each new pooled connection over TCP: send each write at once (TCP_NODELAY), as libpq does.

    pg8000 leaves Nagle's algorithm on. A statement larger than its 8 KiB write buffer (relay's 20 logs
    of a tick, a round of margin events marked published) leaves in two writes, and the second waited
    for the server's delayed acknowledgement of the first: 40 ms a statement, measured on relay's two
    staging statements (43 ms each for 20 logs, 1 ms without the wait)."""
    sock = getattr(driver, "_usock", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _read_timestamptz(value: str) -> Any:
    """A timestamptz as the server writes it (ISO: `2026-12-03 10:00:00.123456+00`) read with
    `datetime.fromisoformat` in 0.1 µs, against 7 µs for pg8000's strptime (a drain of 35k
    margin events spent a tenth of its time there). What it cannot read (infinity, BC dates) goes to
    pg8000's own reader."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return timestamptz_in(value)


# The server's transaction status after a statement (ReadyForQuery): idle, none yet on a new connection.
_IDLE = (b"I", None)


class Connection:
    """One pooled connection. A statement outside `begin()` is a transaction of its own (autocommitted).

    A failure anywhere but in the server (a reset socket, a timeout, a value pg8000 cannot convert after it
    sent part of a statement) leaves the protocol's state unknown: the connection is never used again (see
    `_failed` for what is raised).
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.broken = False
        self._in_begin = False

    def execute(self, statement: Statement, parameters: Mapping[str, Any] | None = None) -> Result:
        """Run `statement` with `parameters` (by name)."""
        return self._run(statement.native, statement.values(parameters or {}))

    def _run(self, native: str, values: tuple) -> Result:
        if self.broken:
            raise DatabaseUnavailable("database connection was lost earlier in this request")
        try:
            context = self.driver.execute_unnamed(native, vals=values)
        except Exception as exc:
            self._raise_failure(exc)
        columns = [column["name"] for column in context.columns] if context.columns else []
        return Result(columns, context.rows, context.row_count)

    def _simple(self, command: str) -> None:
        try:
            self.driver.execute_simple(command)
        except Exception as exc:
            self._raise_failure(exc)

    def _raise_failure(self, error: Exception) -> NoReturn:
        failure = self._failed(error)
        if failure is error:
            raise error
        raise failure from error

    def _failed(self, error: Exception) -> Exception:
        """What a failed statement raises. The server's refusal as it is (the connection stays in step), unless
        the server said it is going away; anything else leaves the connection's state unknown, so it is never
        used again: a lost connection as DatabaseUnavailable, any other failure (a value the driver could not
        convert) as it is. Never with a value in the message: only the SQLSTATE or the driver's own words."""
        code = sqlstate(error)
        if code is not None and code[:2] not in UNAVAILABLE_SQLSTATE_CLASSES:
            return error
        self.broken = True
        if code is not None:
            return DatabaseUnavailable(f"database unavailable: the server answered SQLSTATE {code}")
        if isinstance(error, CONNECTION_LOST):
            return DatabaseUnavailable(f"database unavailable: {type(error).__name__}: {error}")
        return error

    def in_transaction(self) -> bool:
        return self._in_begin or self.driver._transaction_status not in _IDLE

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        if self.in_transaction():
            raise RuntimeError("a transaction is already open on this connection")
        self._simple("BEGIN")
        self._in_begin = True
        try:
            yield self
        except BaseException:
            self._end("ROLLBACK")
            raise
        self._end("COMMIT")

    def _end(self, command: str) -> None:
        self._in_begin = False
        if not self.broken:
            self._simple(command)

    @contextmanager
    def begin_nested(self) -> Iterator[Connection]:
        """A savepoint inside the transaction: rolled back alone when the block raises."""
        self._simple("SAVEPOINT nested")
        try:
            yield self
        except BaseException:
            if not self.broken:
                self._simple("ROLLBACK TO SAVEPOINT nested")
            raise
        self._simple("RELEASE SAVEPOINT nested")


@dataclass
class _Pooled:
    driver: Any
    connected_at: float
    returned_at: float = float("-inf")


class Engine:
    """The instance's pool: up to POOL_SIZE connections kept, POOL_OVERFLOW more for a burst."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._idle: list[_Pooled] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(POOL_SIZE + POOL_OVERFLOW)

    def _new(self) -> _Pooled:
        try:
            driver = self._connect()
        except Exception as exc:
            raise DatabaseUnavailable(f"database unreachable: {type(exc).__name__}: {exc}") from exc
        driver.__class__ = _with_prepared_statements(type(driver))
        driver._prepared = OrderedDict()
        _send_without_delay(driver)
        driver.register_in_adapter(TIMESTAMPTZ, _read_timestamptz)
        return _Pooled(driver, time.monotonic())

    def _checkout(self) -> _Pooled:
        if not self._slots.acquire(timeout=POOL_TIMEOUT_SECONDS):
            raise DatabaseUnavailable(f"database pool exhausted: no connection within {POOL_TIMEOUT_SECONDS} s")
        try:
            while True:
                with self._lock:
                    pooled = self._idle.pop() if self._idle else None
                if pooled is None:
                    return self._new()
                now = time.monotonic()
                if now - pooled.connected_at > POOL_RECYCLE_SECONDS:
                    _close(pooled.driver)
                    continue
                if now - pooled.returned_at < RECENTLY_RETURNED_SECONDS or _alive(pooled.driver):
                    return pooled
                _close(pooled.driver)  # died while resting (a database restart): connect afresh
        except BaseException:
            self._slots.release()
            raise

    def _checkin(self, pooled: _Pooled, connection: Connection) -> None:
        try:
            reusable = not connection.broken and pooled.driver._transaction_status in _IDLE
            with self._lock:
                if reusable and len(self._idle) < POOL_SIZE:
                    pooled.returned_at = time.monotonic()
                    self._idle.append(pooled)
                    return
            _close(pooled.driver)
        finally:
            self._slots.release()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A pooled connection for the block: returned to the pool after, unless it broke."""
        pooled = self._checkout()
        connection = Connection(pooled.driver)
        try:
            yield connection
        finally:
            if connection.in_transaction() and not connection.broken:
                try:
                    connection._end("ROLLBACK")
                except Exception:
                    connection.broken = True
            self._checkin(pooled, connection)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A pooled connection in a transaction for the block."""
        with self.connect() as connection, connection.begin():
            yield connection

    def resting_connections(self) -> int:
        """How many connections rest in the pool, ready for the next checkout."""
        with self._lock:
            return len(self._idle)

    def dispose(self) -> None:
        """Close the connections resting in the pool."""
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            _close(pooled.driver)


def _close(driver: Any) -> None:
    try:
        driver.close()
    except Exception:  # noqa: S110 - closing a dead connection fails; it is dropped either way
        pass


# A connection back in the pool for less than this is not pinged at checkout: it answered its last
# statement that recently, and a database restart takes longer (a connection that failed instead was
# discarded, not returned). Under load, when checkouts follow each other, this saves a round trip per
# delivery (settle's one-statement path: 3 round trips instead of 4).
RECENTLY_RETURNED_SECONDS = 1.0


def _alive(driver: Any) -> bool:
    """Check a connection that rested in the pool, so a database restart costs one reconnect, not a failed
    message: one round trip."""
    try:
        driver.execute_simple("SELECT 1")
        return True
    except Exception:
        return False


def _tcp_connect(settings: DatabaseSettings) -> Callable[[], Any]:
    def connect() -> Any:
        return pg8000.dbapi.connect(user=settings.user, host=settings.host, port=settings.port,
                                    database=settings.name, timeout=TCP_SOCKET_TIMEOUT_SECONDS,
                                    ssl_context=tls_request(settings.host))
    return connect


def _cloud_sql_connect(settings: DatabaseSettings) -> Callable[[], Any]:
    # Imported here: only GCP instances pay for the connector's import.
    from google.cloud.sql.connector import Connector, IPTypes

    connector = Connector(ip_type=IPTypes.PRIVATE, refresh_strategy="lazy")
    instance = cast(str, settings.instance_connection_name)

    def connect() -> Any:
        return connector.connect(
            instance,
            "pg8000",
            user=settings.user,
            db=settings.name,
            enable_iam_auth=True,
            timeout=CONNECT_TIMEOUT_SECONDS,
            # The connector's socket is TLS already, to the instance's server-side proxy, with the instance's
            # certificate verified: pg8000 must not ask for TLS again inside it (and build an SSL context
            # for that, 18 ms; see tls_request). This is the byte stream the connector's earlier releases
            # sent, when they had pg8000 wrap the socket without asking (its `request_ssl = False`).
            ssl_context=False,
        )

    return connect


@functools.cache
def get_engine(settings: DatabaseSettings) -> Engine:
    """The instance's pool for these settings, created on first call (it connects on first use)."""
    if settings.instance_connection_name:
        return Engine(_cloud_sql_connect(settings))
    return Engine(_tcp_connect(settings))


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A pooled connection in a transaction; connection loss raises DatabaseUnavailable, so Pub/Sub retries."""
    with engine.begin() as conn:
        yield conn


@contextmanager
def connection(engine: Engine) -> Iterator[Connection]:
    """One pooled connection for several transactions (`conn.begin()`), checked out (and pinged) once;
    connection loss raises DatabaseUnavailable as in `transaction`."""
    with engine.connect() as conn:
        yield conn


def execute_autocommitted(conn: Connection, statement: str, params: tuple) -> list[dict[str, Any]]:
    """Run one statement as a transaction of its own, in one round trip, on a connection between
    transactions; return the rows it returned (none without RETURNING), each as a dict. `statement` takes
    the driver's `%s` placeholders.

    An error the server reported is raised as the driver's (see `server_answered`); any other failure
    leaves the connection's state unknown, so it is discarded and DatabaseUnavailable raised.
    """
    if conn.in_transaction():
        raise RuntimeError("execute_autocommitted runs between transactions, not inside one")
    return conn._run(_positional(statement), tuple(params)).mappings().all()


# How long one push delivery waits, inside the request, for a database that went away (a restart, a
# failover, a maintenance window). Bounded well inside every push ack deadline and function timeout
# (at least 60 s; `Topology.problems` checks it), so the wait never makes Pub/Sub push a second copy.
# Beyond it the delivery fails as retryable and Pub/Sub's own retries take over: the README's
# "Outages" note gives the arithmetic for the local stack and for production.
OUTAGE_WAIT_SECONDS = 40.0
_FIRST_OUTAGE_PAUSE_SECONDS = 0.5
_LONGEST_OUTAGE_PAUSE_SECONDS = 5.0

F = TypeVar("F", bound=Callable[..., object])


def rides_out_database_outages(function: F) -> F:
    """Run `function`, retrying it with backoff while the database is unavailable, up to OUTAGE_WAIT_SECONDS.

    For push-triggered entry points only: their work is idempotent (inbox, outbox, checkpoints), so
    running it again after a failed connection changes nothing that already committed. The wait is
    retryable by nature and never recorded as poison.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        deadline = time.monotonic() + OUTAGE_WAIT_SECONDS
        pause = _FIRST_OUTAGE_PAUSE_SECONDS
        waited_from = None
        while True:
            try:
                result = function(*args, **kwargs)
            except DatabaseUnavailable as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("database still unavailable after waiting; Pub/Sub will redeliver",
                                extra={"waited_seconds": OUTAGE_WAIT_SECONDS, "error": type(exc).__name__})
                    raise
                if waited_from is None:
                    waited_from = time.monotonic()
                    log.warning("database unavailable; waiting for it inside the request",
                                extra={"wait_budget_seconds": OUTAGE_WAIT_SECONDS, "error": type(exc).__name__})
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, _LONGEST_OUTAGE_PAUSE_SECONDS)
                continue
            if waited_from is not None:
                log.info("database back; delivery completed",
                         extra={"waited_seconds": round(time.monotonic() - waited_from, 1)})
            return result

    return wrapper  # type: ignore[return-value]
