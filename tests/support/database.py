"""Connection pools on the test database as a given role, made the way the functions make theirs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from shared.db import get_engine
from shared.settings import DatabaseSettings
from shared.stack.layout import DATABASE, StackLayout


@contextmanager
def engine_as(layout: StackLayout, user: str) -> Iterator[Engine]:
    """The pool `shared.db.get_engine` gives `user` on the stack's PostgreSQL; disposed on leaving."""
    engine = get_engine(DatabaseSettings(name=DATABASE, user=user, host="127.0.0.1", port=layout.postgres_port,
                                         instance_connection_name=None))
    try:
        yield engine
    finally:
        engine.dispose()
