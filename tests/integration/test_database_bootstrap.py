"""The database bootstrap gives a fresh login role exactly what the migrations need, on real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy

from shared.deploy.bootstrap_database import bootstrap
from shared.stack.processes import ServiceFailed
from shared.stack.services import create_database


def test_a_bare_migrator_can_run_migration_statements_after_the_bootstrap(stack, owner_engine):
    migrator = f"db-migrator-{uuid.uuid4().hex[:6]}@test.iam"  # the shape of a Cloud SQL IAM user
    role, schema = f"fn_probe_{uuid.uuid4().hex[:6]}", f"probe_{uuid.uuid4().hex[:6]}"
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE ROLE "{migrator}" LOGIN'))
    as_migrator = sqlalchemy.create_engine(sqlalchemy.make_url(stack.layout.database_url()).set(username=migrator),
                                           isolation_level="AUTOCOMMIT")
    try:
        with as_migrator.connect() as conn:  # before: nothing
            try:
                conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
                raise AssertionError("a bare IAM user could create a schema")
            except sqlalchemy.exc.ProgrammingError:
                pass
        statements = bootstrap(owner_engine.url, migrator)
        assert len(statements) == 3
        bootstrap(owner_engine.url, migrator)  # safe to repeat
        with as_migrator.connect() as conn:  # after: what migration 0001 and alembic do
            conn.execute(sqlalchemy.text(f"CREATE ROLE {role} NOLOGIN"))
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
            conn.execute(sqlalchemy.text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
            conn.execute(sqlalchemy.text(f"CREATE TABLE public.{schema}_version (v text)"))
            conn.execute(sqlalchemy.text(f"DROP TABLE public.{schema}_version"))
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema}"))
            conn.execute(sqlalchemy.text(f"DROP ROLE {role}"))
    finally:
        as_migrator.dispose()
        with owner_engine.begin() as conn:
            database = conn.execute(sqlalchemy.text("SELECT current_database()")).scalar()
            conn.execute(sqlalchemy.text(f'REVOKE CREATE ON DATABASE {database} FROM "{migrator}"'))
            conn.execute(sqlalchemy.text(f'REVOKE CREATE ON SCHEMA public FROM "{migrator}"'))
            conn.execute(sqlalchemy.text(f'DROP ROLE "{migrator}"'))


def test_the_stack_database_orders_text_as_cloud_sqls_en_us_does(owner_engine):
    # Checksummed addresses are mixed-case: en_US compares them case-insensitively first (lower case first
    # on a tie), where a bytewise collation puts every capital before every small letter.
    with owner_engine.connect() as conn:
        ordered = conn.execute(sqlalchemy.text(
            "SELECT a FROM (VALUES ('0xAC'), ('0xab'), ('0xB'), ('0xAb')) AS v(a) ORDER BY a")).scalars().all()
        encoding = conn.execute(sqlalchemy.text("SHOW server_encoding")).scalar()
    assert ordered == ["0xab", "0xAb", "0xAC", "0xB"]
    assert encoding == "UTF8"


def test_a_database_an_older_stack_created_is_refused_with_the_way_out(stack, owner_engine):
    legacy, fresh = f"legacy_{uuid.uuid4().hex[:6]}", f"fresh_{uuid.uuid4().hex[:6]}"
    server = sqlalchemy.create_engine(owner_engine.url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {legacy}"))  # the machine's locale, as before
    try:
        with pytest.raises(ServiceFailed, match="make test-down"):
            create_database(stack.layout, legacy)
        create_database(stack.layout, fresh)
        create_database(stack.layout, fresh)  # found, and accepted
    finally:
        with server.connect() as conn:
            for name in (legacy, fresh):
                conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        server.dispose()
