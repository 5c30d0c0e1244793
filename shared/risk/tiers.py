"""The tier and health-factor rules, in one place.

The assessment pass (shared/risk/assessment.py), the `risk.portfolios` view and the query API
(shared/api/risk_queries.py) all take them from here: Python code calls the functions below, SQL calls
the database functions whose bodies are `SQL_FUNCTIONS` (created by migration 0010;
tests/integration/test_tiers.py fails when a body here and the database's differ, so a change here
comes with a migration).

    health factor = risk-adjusted collateral / obligation, to 8 places; 'Infinity' when nothing is owed
    (for one position, risk-adjusted collateral = amount x price x liquidation threshold, as Aave v3)

Tiers, best to worst, ranked 0 to 3. Below a tier's threshold (a setting, RISK_TIER_THRESHOLDS) a
position is in that tier; it leaves a worse tier only once it is the hysteresis above the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

TIERS = ("HEALTHY", "WARNING", "MARGIN_CALL", "LIQUIDATION")
BEST = TIERS[0]
# The tiers a threshold leads into (all but the best), and the ones a user is alerted about.
THRESHOLD_TIERS = TIERS[1:]
ALERTED_TIERS = frozenset(THRESHOLD_TIERS)
HEALTH_FACTOR_PLACES = 8
INFINITE = Decimal("Infinity")


def health_factor(adjusted_collateral: Decimal, obligation: Decimal) -> Decimal:
    """Risk-adjusted collateral over obligation, to 8 places, halves away from zero as PostgreSQL's
    round() does; Infinity when nothing is owed."""
    if obligation == 0:
        return INFINITE
    return (adjusted_collateral / obligation).quantize(Decimal(1).scaleb(-HEALTH_FACTOR_PLACES),
                                                       rounding=ROUND_HALF_UP)


def worst(tiers: Iterable[str]) -> str:
    """The worst of `tiers` (the best tier when there are none)."""
    return max(tiers, key=TIERS.index, default=BEST)


def _rank_cases() -> str:
    return " ".join(f"WHEN '{tier}' THEN {rank}" for rank, tier in reversed(list(enumerate(TIERS))) if rank)


# name(arguments) -> (return type, body). SQL functions of one expression, IMMUTABLE: the planner inlines
# them, so a pass over a million positions pays nothing for calling them.
SQL_FUNCTIONS: dict[str, tuple[str, str]] = {
    # A tier's rank, 0 (best) to 3; no tier yet counts as the best.
    "tier_rank(tier text)": ("integer", f"SELECT CASE coalesce(tier, '{BEST}') {_rank_cases()} ELSE 0 END"),
    # The tier of a rank.
    "tier_named(rank_value integer)": (
        "text", "SELECT (ARRAY[" + ", ".join(f"'{tier}'" for tier in TIERS) + "])[1 + rank_value]"),
    "health_factor(adjusted_collateral numeric, obligation numeric)": (
        "numeric", "SELECT CASE WHEN obligation = 0 THEN 'Infinity'::numeric "
                   f"ELSE round(adjusted_collateral / obligation, {HEALTH_FACTOR_PLACES}) END"),
}


def create_sql_functions(schema: str) -> list[str]:
    """The statements that create (or replace) the SQL functions in `schema`."""
    return [f"CREATE OR REPLACE FUNCTION {schema}.{signature} RETURNS {returns} "
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ {body} $$"
            for signature, (returns, body) in SQL_FUNCTIONS.items()]


def rank_below_thresholds_sql(health_factor_sql: str, bound: str = "") -> str:
    """SQL: the rank of the worst tier whose threshold `health_factor_sql` is below.

    The thresholds are bound parameters named after the tiers (`:warning`, `:margin_call`, …, with
    `bound` appended: "_recovered" for the thresholds plus the hysteresis), so nothing is added per row.
    """
    cases = " ".join(f"WHEN {health_factor_sql} < CAST(:{tier.lower()}{bound} AS numeric) THEN {TIERS.index(tier)}"
                     for tier in reversed(THRESHOLD_TIERS))
    return f"CASE {cases} ELSE 0 END"


def threshold_parameters(thresholds: dict[str, Decimal], hysteresis: Decimal) -> dict[str, Decimal]:
    """The parameters `rank_below_thresholds_sql` binds, from the configured thresholds."""
    bounds = {tier.lower(): thresholds[tier] for tier in THRESHOLD_TIERS}
    return {**bounds, **{f"{name}_recovered": value + hysteresis for name, value in bounds.items()}}
