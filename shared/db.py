"""The one engine factory: TCP locally, the Cloud SQL Python Connector with IAM auth in GCP.

The engine is created lazily on first use and cached per function instance, so a cold start that
never touches the database pays nothing and warm invocations reuse the pool.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

import pg8000.dbapi
import pg8000.legacy
import sqlalchemy
from pg8000.converters import TIMESTAMPTZ, make_params, timestamptz_in
from sqlalchemy import TextClause, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, ExceptionContext

from shared.errors import DatabaseUnavailable
from shared.settings import DatabaseSettings

T = TypeVar("T")
log = logging.getLogger(__name__)

# Pool settings, shared by both connection paths.
POOL_OPTIONS = {
    # A 2nd-gen instance serves a few concurrent requests at most; two warm connections cover it
    # without exhausting Cloud SQL's connection limit when the function scales out.
    "pool_size": 2,
    # Bursts may open two more, closed again when returned.
    "max_overflow": 2,
    # Waiting longer than this for a pooled connection means the instance is overloaded: fail and let
    # Pub/Sub retry instead of holding the message.
    "pool_timeout": 10,
    # Cloud SQL and proxies drop idle connections; recycle before that happens.
    "pool_recycle": 1800,
    # Connections are checked before use by `_ping_on_checkout`, not SQLAlchemy's pre-ping: that one leaves
    # the driver inside a transaction it opened for the ping.
    # Statement parameters are users' names, emails and phones: never in an error's text or a log line.
    "hide_parameters": True,
}

# Give up on an unreachable server quickly; the message is retried by Pub/Sub, not by us.
CONNECT_TIMEOUT_SECONDS = 5
# pg8000's `timeout` bounds connecting *and every socket read*, so over TCP it must also cover the
# longest statement (assess-margin's pass over 100k positions takes seconds). A refused connection
# still fails at once; only a silently unreachable host waits this long.
TCP_SOCKET_TIMEOUT_SECONDS = 60


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


def _tcp_engine(settings: DatabaseSettings) -> Engine:
    url = sqlalchemy.URL.create(
        "postgresql+pg8000",
        username=settings.user,
        host=settings.host,
        port=settings.port,
        database=settings.name,
    )
    return sqlalchemy.create_engine(
        url, connect_args={"timeout": TCP_SOCKET_TIMEOUT_SECONDS, "ssl_context": tls_request(settings.host)},
        **POOL_OPTIONS
    )


def _cloud_sql_engine(settings: DatabaseSettings) -> Engine:
    # Imported here: only GCP instances pay for the connector's import.
    from google.cloud.sql.connector import Connector, IPTypes

    connector = Connector(ip_type=IPTypes.PRIVATE, refresh_strategy="lazy")

    def connect():
        return connector.connect(
            settings.instance_connection_name,
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

    return sqlalchemy.create_engine("postgresql+pg8000://", creator=connect, **POOL_OPTIONS)


# What `sql` returns: what a connection's `execute` takes.
Statement = TextClause


@functools.lru_cache(maxsize=1024)
def sql(statement: str) -> Statement:
    """A statement written as SQL, with `:name` parameters, ready to execute; built once per distinct text.

    The platform's statements are SQL text rather than SQLAlchemy expressions: what runs is what is read,
    and nothing is compiled on an instance's first request (9 expressions compiled in screen-compliance's
    first registration took 0.045 s under the profiler).
    """
    return text(statement)


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of an error the server reported (pg8000 carries the server's fields as a dict)."""
    fields = error.args[0] if isinstance(error, pg8000.dbapi.DatabaseError) and error.args else None
    return fields.get("C") if isinstance(fields, dict) else None


def is_data_error(error: sa_exc.DBAPIError) -> bool:
    """The server refused a value (SQLSTATE class 22: out of range, invalid text representation...)."""
    return (sqlstate(error.orig) or "").startswith("22")


def server_answered(error: BaseException) -> bool:
    """True for an error the server reported (pg8000 has then read its reply up to ReadyForQuery)."""
    return sqlstate(error) is not None


def _discard_connections_in_unknown_state(context: ExceptionContext) -> None:
    """Invalidate the connection when a statement failed anywhere but in the server.

    pg8000 sends and flushes Parse/Describe before it converts the parameters; when a conversion
    raises (a datetime out of range in UTC, an unpaired surrogate), the server's reply stays unread,
    and the next statement on that connection would read it. Such a connection must never return to
    the pool. An error the server reported leaves the protocol in step and the connection usable.
    """
    if not server_answered(context.original_exception):
        context.is_disconnect = True


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


# pg8000 rewrites each statement's placeholders (`%s` to `$1`...) by scanning it a character at a time, on
# every execution: about 0.1 ms for a typical statement, as much as its round trip. For the positional
# styles SQLAlchemy uses, the result depends on the statement's text alone, so it is remembered.
_POSITIONAL_STYLES = frozenset({"format", "qmark", "numeric"})
_convert_paramstyle = pg8000.legacy.convert_paramstyle


@functools.lru_cache(maxsize=1024)
def _positional_statement(style: str, statement: str) -> str:
    return _convert_paramstyle(style, statement, ())[0]


def _remembering_convert_paramstyle(style: str, statement: str, args: Any) -> tuple[str, Any]:
    if style in _POSITIONAL_STYLES:
        return _positional_statement(style, statement), args
    return _convert_paramstyle(style, statement, args)


pg8000.legacy.convert_paramstyle = _remembering_convert_paramstyle

_PREPARING_CLASSES: dict[type, type] = {}


def _with_prepared_statements(connection_class: type) -> type:
    if connection_class not in _PREPARING_CLASSES:
        _PREPARING_CLASSES[connection_class] = type(
            f"Prepared{connection_class.__name__}", (_PreparedStatementsMixin, connection_class), {})
    return _PREPARING_CLASSES[connection_class]


def _keep_statements_prepared(dbapi_connection: Any, _record: Any) -> None:
    """On each new pooled connection (TCP or the Cloud SQL connector's): statements are prepared once."""
    dbapi_connection.__class__ = _with_prepared_statements(type(dbapi_connection))
    dbapi_connection._prepared = OrderedDict()


def _send_without_delay(dbapi_connection: Any, _record: Any) -> None:
    """On each new pooled connection over TCP: send each write at once (TCP_NODELAY), as libpq does.

    pg8000 leaves Nagle's algorithm on. A statement larger than its 8 KiB write buffer (relay's 20 logs
    of a tick, a round of margin events marked published) leaves in two writes, and the second waited
    for the server's delayed acknowledgement of the first: 40 ms a statement, measured on relay's two
    staging statements (43 ms each for 20 logs, 1 ms without the wait)."""
    sock = getattr(dbapi_connection, "_usock", None)
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


def _read_timestamps_fast(dbapi_connection: Any, _record: Any) -> None:
    """On each new pooled connection: timestamptz values are read by `_read_timestamptz`."""
    dbapi_connection.register_in_adapter(TIMESTAMPTZ, _read_timestamptz)


# A connection back in the pool for less than this is not pinged at checkout: it answered its last
# statement that recently, and a database restart takes longer (a connection that failed instead was
# discarded, not returned). Under load, when checkouts follow each other, this saves a round trip per
# delivery (settle's one-statement path: 3 round trips instead of 4).
RECENTLY_RETURNED_SECONDS = 1.0


def _note_return(_dbapi_connection: Any, record: Any) -> None:
    """On each connection returned to the pool: when."""
    if record is not None:
        record.info["returned_at"] = time.monotonic()


def _ping_on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Check a pooled connection before use, so a database restart costs one reconnect, not a failed
    message: one round trip, autocommitted, so no transaction stays open after it. A dead connection is
    discarded and the pool connects afresh. Not for a connection returned moments ago (see
    RECENTLY_RETURNED_SECONDS)."""
    if time.monotonic() - record.info.get("returned_at", float("-inf")) < RECENTLY_RETURNED_SECONDS:
        return
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.cursor().execute("SELECT 1")
    except (pg8000.dbapi.Error, OSError) as exc:
        raise sa_exc.DisconnectionError(f"pooled connection is dead: {exc!r}") from exc
    finally:
        dbapi_connection.autocommit = False


@functools.cache
def get_engine(settings: DatabaseSettings) -> Engine:
    """The instance's engine for these settings, created on first call."""
    if settings.instance_connection_name:
        engine = _cloud_sql_engine(settings)
    else:
        engine = _tcp_engine(settings)
    event.listen(engine, "handle_error", _discard_connections_in_unknown_state)
    event.listen(engine, "connect", _keep_statements_prepared)
    event.listen(engine, "connect", _send_without_delay)
    event.listen(engine, "connect", _read_timestamps_fast)
    event.listen(engine, "checkin", _note_return)
    event.listen(engine, "checkout", _ping_on_checkout)
    return engine


# Driver errors that mean "the database is not there right now", as opposed to a bug or bad data.
TRANSIENT_DB_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError)


@contextmanager
def _unavailability_mapped() -> Iterator[None]:
    """Connection loss and an exhausted pool become DatabaseUnavailable, so Pub/Sub retries."""
    try:
        yield
    except sa_exc.DBAPIError as exc:
        if isinstance(exc, TRANSIENT_DB_ERRORS) or exc.connection_invalidated:
            raise DatabaseUnavailable(f"database unavailable: {exc.orig!r}") from exc
        raise
    except sa_exc.TimeoutError as exc:
        raise DatabaseUnavailable(f"database pool exhausted: {exc}") from exc


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, with connection loss mapped to DatabaseUnavailable so Pub/Sub retries."""
    with _unavailability_mapped(), engine.begin() as conn:
        yield conn


@contextmanager
def connection(engine: Engine) -> Iterator[Connection]:
    """One pooled connection for several transactions (`conn.begin()`), checked out (and pinged) once;
    connection loss mapped to DatabaseUnavailable as in `transaction`."""
    with _unavailability_mapped(), engine.connect() as conn:
        yield conn


def execute_autocommitted(conn: Connection, statement: str, params: tuple) -> list[dict[str, Any]]:
    """Run one statement as a transaction of its own, in one round trip, on a connection between
    transactions; return the rows it returned (none without RETURNING), each as a dict. `statement` takes
    the driver's `%s` placeholders.

    SQLAlchemy's AUTOCOMMIT isolation level would do the same but cost three more round trips to reset
    when the connection returns to the pool; this sets the driver's own autocommit for the one statement.
    An error the server reported is raised as the driver's (see `server_answered`); any other failure
    leaves the connection's state unknown, so it is discarded and DatabaseUnavailable raised.
    """
    driver = cast(Any, conn.connection.dbapi_connection)
    # pg8000 keeps the server's transaction status (private: it has no public accessor).
    if conn.in_transaction() or driver._in_transaction:
        raise RuntimeError("execute_autocommitted runs between transactions, not inside one")
    driver.autocommit = True
    try:
        cursor = driver.cursor()
        cursor.execute(statement, params)
        if cursor.description is None:
            return []
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except pg8000.dbapi.Error as exc:
        if server_answered(exc):
            raise
        conn.invalidate()  # the connection's state is unknown: never back to the pool
        raise DatabaseUnavailable(f"database unavailable: {exc!r}") from exc
    finally:
        driver.autocommit = False


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
            except (DatabaseUnavailable, *TRANSIENT_DB_ERRORS) as exc:
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
