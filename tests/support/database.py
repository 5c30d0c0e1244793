"""Connection pools on the test database as a given role, made the way the functions make theirs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy

from shared.db import Engine, Statement, get_engine
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


class OnSqlAlchemy:
    """A SQLAlchemy connection that also runs the platform's statements (shared.db.Statement).

    For db tests that drive handlers inside a transaction of their own (rolled back afterwards) and read
    back with SQLAlchemy on the same connection: the statements are SQL with `:name` parameters, which
    SQLAlchemy's text() takes as they are."""

    def __init__(self, connection: sqlalchemy.Connection) -> None:
        self.connection = connection

    def execute(self, statement: Any, parameters: Any = None) -> Any:
        if isinstance(statement, Statement):
            statement = sqlalchemy.text(statement.text)
        return self.connection.execute(statement, parameters or {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)
