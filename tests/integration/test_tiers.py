"""The tier and health-factor rules have one home, shared/risk/tiers.py: the database functions the
assessment pass and the portfolios view call are exactly its SQL, and they agree with its Python (which
the query API uses) on every case below. A change to tiers.py without a migration fails here."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy

from shared.risk import SCHEMA
from shared.risk.tiers import SQL_FUNCTIONS, TIERS, health_factor, worst


def test_the_database_functions_are_tiers_py_sql(owner_engine):
    with owner_engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            "SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')' AS signature, "
            "pg_get_function_result(p.oid) AS returns, p.prosrc, p.provolatile "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema"),
            {"schema": SCHEMA}).mappings().all()
    in_database = {row["signature"]: (row["returns"], row["prosrc"].strip()) for row in rows}
    assert in_database == SQL_FUNCTIONS
    assert {row["provolatile"] for row in rows} == {"i"}  # immutable: inlined into the pass


@pytest.mark.parametrize(("adjusted", "owed"), [
    ("150", "100"), ("1", "3"), ("2", "3"), ("0", "5"), ("5", "0"), ("0", "0"),
    ("1234567.123456789", "0.000000001"), ("0.000000004", "1"), ("0.000000005", "1"),
])
def test_health_factor_in_sql_and_python_agree(owner_engine, adjusted: str, owed: str):
    with owner_engine.connect() as conn:
        in_sql = conn.execute(sqlalchemy.text(
            f"SELECT {SCHEMA}.health_factor(CAST(:a AS numeric), CAST(:o AS numeric))"),
            {"a": adjusted, "o": owed}).scalar_one()
    assert in_sql == health_factor(Decimal(adjusted), Decimal(owed))


@pytest.mark.parametrize("tiers", [[], ["HEALTHY"], ["WARNING", "HEALTHY"], ["MARGIN_CALL", "LIQUIDATION", "WARNING"],
                                   ["HEALTHY", "MARGIN_CALL"], list(TIERS)])
def test_ranks_and_the_worst_tier_in_sql_and_python_agree(owner_engine, tiers: list[str]):
    with owner_engine.connect() as conn:
        in_sql = conn.execute(sqlalchemy.text(
            f"SELECT {SCHEMA}.tier_named(coalesce(max({SCHEMA}.tier_rank(t)), 0)) "
            "FROM unnest(CAST(:tiers AS text[])) AS t"), {"tiers": tiers}).scalar_one()
        ranks = conn.execute(sqlalchemy.text(
            f"SELECT {SCHEMA}.tier_rank(t) FROM unnest(CAST(:tiers AS text[])) WITH ORDINALITY AS u(t, i) "
            "ORDER BY i"), {"tiers": list(TIERS)}).scalars().all()
        no_tier = conn.execute(sqlalchemy.text(f"SELECT {SCHEMA}.tier_rank(NULL)")).scalar_one()
    assert in_sql == worst(tiers)
    assert ranks == list(range(len(TIERS))) and no_tier == 0
