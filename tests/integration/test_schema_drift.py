"""The tables the code declares (shared/*/tables.py, and each domain's inbox, outbox and rejected
messages) against the database the migrations build: Alembic's `compare_metadata`, so a column added
to one and not the other, a type or a nullability that differ, fail here."""

from __future__ import annotations

import importlib

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.messaging.tables import messaging_tables

# The packages with a tables.py, and the schemas that carry messaging tables.
DOMAINS = ("relay", "settlement", "identity", "pricing", "risk", "notify", "compliance", "reconcile")
MESSAGING_SCHEMAS = ("relay", "settlement", "identity", "pricing", "risk", "notify", "compliance")


def _declared() -> sqlalchemy.MetaData:
    metadata = sqlalchemy.MetaData()
    for domain in DOMAINS:
        for table in importlib.import_module(f"shared.{domain}.tables").metadata.tables.values():
            table.to_metadata(metadata)
    for schema in MESSAGING_SCHEMAS:
        tables = messaging_tables(schema)
        for table in (tables.inbox, tables.outbox, tables.rejected):
            table.to_metadata(metadata)
    return metadata


def _differences(conn, metadata: sqlalchemy.MetaData) -> list:
    schemas = {table.schema for table in metadata.tables.values()}
    # A partitioned table's partitions (risk's daily snapshot partitions) are the table, not tables of their own.
    partitions = set(conn.execute(sqlalchemy.text("SELECT relname FROM pg_class WHERE relispartition")).scalars())

    def include_name(name, type_, parent_names):
        if type_ == "schema":
            return name in schemas
        return not (type_ == "table" and name in partitions)

    context = MigrationContext.configure(conn, opts={
        "include_schemas": True, "include_name": include_name, "compare_type": True})
    # Indexes the migrations create for queries are not all declared in code: compared are tables,
    # columns, their types and nullability.
    return [diff for diff in _flatten(compare_metadata(context, metadata))
            if diff[0] not in ("add_index", "remove_index")]


def _flatten(diffs) -> list:
    flat = []
    for diff in diffs:
        flat.extend(diff if isinstance(diff, list) else [diff])
    return flat


def test_every_declared_table_matches_the_migrated_database(owner_engine):
    with owner_engine.connect() as conn:
        assert _differences(conn, _declared()) == []


def test_a_drift_would_fail(owner_engine):
    # The check itself: a column only the code declares is reported.
    metadata = _declared()
    metadata.tables["compliance.subjects"].append_column(sqlalchemy.Column("nickname", sqlalchemy.Text))
    with owner_engine.connect() as conn:
        assert [d[0] for d in _differences(conn, metadata)] == ["add_column"]


def test_the_api_reads_tables_a_later_migration_adds_to_every_schema_it_reads(owner_engine):
    # As the migrator (the owner here) creates them: default privileges (migrations.domains.grant_reader).
    with owner_engine.connect() as conn:
        transaction = conn.begin()
        try:
            for schema in ("settlement", "risk", "notify", "compliance"):
                conn.execute(sqlalchemy.text(f"CREATE TABLE {schema}.later_table (id int)"))
            conn.execute(sqlalchemy.text("SET LOCAL ROLE fn_api"))
            for schema in ("settlement", "risk", "notify", "compliance"):
                assert conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {schema}.later_table")).scalar() == 0
        finally:
            transaction.rollback()
