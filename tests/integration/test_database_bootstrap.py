"""The database bootstrap gives a fresh login role exactly what the migrations need, on real PostgreSQL."""

from __future__ import annotations

import uuid

import sqlalchemy

from shared.deploy.bootstrap_database import bootstrap


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
