"""The one engine factory: TCP locally, the Cloud SQL Python Connector with IAM auth in GCP.

The engine is created lazily on first use and cached per function instance, so a cold start that
never touches the database pays nothing and warm invocations reuse the pool.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from shared.errors import DatabaseUnavailable
from shared.settings import DatabaseSettings

T = TypeVar("T")

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
    # Check a connection before use, so a database restart costs one reconnect, not a failed message.
    "pool_pre_ping": True,
}

# Give up on an unreachable server quickly; the message is retried by Pub/Sub, not by us.
CONNECT_TIMEOUT_SECONDS = 5
# pg8000's `timeout` bounds connecting *and every socket read*, so over TCP it must also cover the
# longest statement (assess-margin's pass over 100k positions takes seconds). A refused connection
# still fails at once; only a silently unreachable host waits this long.
TCP_SOCKET_TIMEOUT_SECONDS = 60


def _tcp_engine(settings: DatabaseSettings) -> Engine:
    url = sqlalchemy.URL.create(
        "postgresql+pg8000",
        username=settings.user,
        host=settings.host,
        port=settings.port,
        database=settings.name,
    )
    return sqlalchemy.create_engine(
        url, connect_args={"timeout": TCP_SOCKET_TIMEOUT_SECONDS}, **POOL_OPTIONS
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
        )

    return sqlalchemy.create_engine("postgresql+pg8000://", creator=connect, **POOL_OPTIONS)


@functools.cache
def get_engine(settings: DatabaseSettings) -> Engine:
    """The instance's engine for these settings, created on first call."""
    if settings.instance_connection_name:
        return _cloud_sql_engine(settings)
    return _tcp_engine(settings)


# PostgreSQL's wire protocol carries at most 65,535 bind parameters per statement; multi-row
# statements are split into chunks of this many rows, which stays under it for up to 60 columns.
MAX_ROWS_PER_STATEMENT = 1000


def in_chunks(rows: Sequence[T], size: int = MAX_ROWS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    """Consecutive slices of `rows`, each at most `size` long."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# Driver errors that mean "the database is not there right now", as opposed to a bug or bad data.
TRANSIENT_DB_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, with connection loss mapped to DatabaseUnavailable so Pub/Sub retries."""
    try:
        with engine.begin() as conn:
            yield conn
    except sa_exc.DBAPIError as exc:
        if isinstance(exc, TRANSIENT_DB_ERRORS) or exc.connection_invalidated:
            raise DatabaseUnavailable(f"database unavailable: {exc.orig!r}") from exc
        raise
    except sa_exc.TimeoutError as exc:
        raise DatabaseUnavailable(f"database pool exhausted: {exc}") from exc
