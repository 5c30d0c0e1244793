"""The set-based assessment: one SQL statement recomputes every open position in scope.

For each position in scope (all open positions on an asset after a price update, or one escrow after
it changed) the statement computes the health factor at the asset's current price, the tier with
hysteresis, writes a snapshot, and for each tier change a margin event and its outbox row. No Python
loop over positions: 100k positions are one round trip.

    health factor = collateral amount x price x liquidation threshold / obligation   (Aave v3)
                    'Infinity' when nothing is owed (PostgreSQL numeric has it)

Tiers, best to worst: HEALTHY, WARNING, MARGIN_CALL, LIQUIDATION. A position moves to a worse tier as
soon as its health factor falls below that tier's threshold, but leaves a worse tier only once it is
`hysteresis` above the threshold: new = greatest(raw(hf), least(current, raw(hf - hysteresis))).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.envelope import utc_iso
from shared.events import MARGIN_TIER_CHANGED
from shared.risk.tables import SCHEMA
from shared.settings import RiskSettings

MARGIN_EVENTS_TOPIC = "risk.margin-events.v1"
TIERS = ("HEALTHY", "WARNING", "MARGIN_CALL", "LIQUIDATION")

# Which positions a pass covers.
ALL_OPEN_ON_ASSET = "p.asset_symbol = :asset"
ONE_ESCROW = "p.chain_id = :chain_id AND p.contract = :contract AND p.escrow_id = :escrow_id"


def _tier_rank(hf: str, shift: str) -> str:
    """SQL: the tier rank (0 = HEALTHY … 3 = LIQUIDATION) of health factor `hf` with thresholds + `shift`."""
    return (f"CASE WHEN {hf} < CAST(:liquidation AS numeric) + {shift} THEN 3 "
            f"WHEN {hf} < CAST(:margin_call AS numeric) + {shift} THEN 2 "
            f"WHEN {hf} < CAST(:warning AS numeric) + {shift} THEN 1 ELSE 0 END")


_CURRENT_RANK = ("CASE coalesce(s.previous_tier, 'HEALTHY') WHEN 'LIQUIDATION' THEN 3 WHEN 'MARGIN_CALL' THEN 2 "
                 "WHEN 'WARNING' THEN 1 ELSE 0 END")
_HEALTH_FACTOR = ("CASE WHEN p.obligation_usd = 0 THEN 'Infinity'::numeric "
                  "ELSE round(p.collateral_amount * ap.price * p.liquidation_threshold / p.obligation_usd, 8) END")
# derive_event_id(cause, MarginTierChanged, "chain_id:contract:escrow_id"), computed in SQL.
_EVENT_ID = ("'MarginTierChanged:' || left(encode(sha256(convert_to(CAST(:cause_event_id AS text) || '|MarginTierChanged|' "
             "|| c.chain_id || ':' || c.contract || ':' || c.escrow_id, 'UTF8')), 'hex'), 32)")

_ASSESS = f"""
WITH scored AS (
    SELECT p.chain_id, p.contract, p.escrow_id, p.depositor, p.asset_symbol, p.collateral_amount,
           p.obligation_usd, p.tier AS previous_tier, p.correlation_id, ap.price, ap.price_event_id,
           ap.provenance, p.collateral_amount * ap.price AS collateral_value_usd, {_HEALTH_FACTOR} AS health_factor
    FROM {SCHEMA}.positions p JOIN {SCHEMA}.asset_prices ap ON ap.asset_symbol = p.asset_symbol
    WHERE p.is_open AND {{scope}}
), snapshots AS (
    INSERT INTO {SCHEMA}.margin_health_snapshots
        (chain_id, contract, escrow_id, depositor, asset_symbol, collateral_amount, obligation_usd, price,
         collateral_value_usd, health_factor, previous_tier, tier, price_event_id, price_provenance,
         correlation_id, cause_event_id, taken_at)
    SELECT s.chain_id, s.contract, s.escrow_id, s.depositor, s.asset_symbol, s.collateral_amount,
           s.obligation_usd, s.price, s.collateral_value_usd, s.health_factor, s.previous_tier,
           (ARRAY['HEALTHY', 'WARNING', 'MARGIN_CALL', 'LIQUIDATION'])[1 + greatest(
               {_tier_rank("s.health_factor", "0")},
               least({_CURRENT_RANK}, {_tier_rank("s.health_factor", "CAST(:hysteresis AS numeric)")}))],
           s.price_event_id, s.provenance, s.correlation_id, :cause_event_id, :now
    FROM scored s
    RETURNING *
), changed AS (
    SELECT c.*, {_EVENT_ID} AS event_id FROM snapshots c WHERE c.tier <> coalesce(c.previous_tier, 'HEALTHY')
), tier_updates AS (
    UPDATE {SCHEMA}.positions p SET tier = c.tier, updated_at = :now FROM changed c
    WHERE p.chain_id = c.chain_id AND p.contract = c.contract AND p.escrow_id = c.escrow_id
), events AS (
    INSERT INTO {SCHEMA}.margin_events
        (event_id, chain_id, contract, escrow_id, depositor, previous_tier, tier, health_factor, price,
         snapshot_id, correlation_id, cause_event_id, occurred_at)
    SELECT c.event_id, c.chain_id, c.contract, c.escrow_id, c.depositor, coalesce(c.previous_tier, 'HEALTHY'),
           c.tier, c.health_factor, c.price, c.id, c.correlation_id, :cause_event_id, :now
    FROM changed c
), published AS (
    INSERT INTO {SCHEMA}.outbox (dedupe_key, event_id, topic, envelope, attributes)
    SELECT c.event_id, c.event_id, CAST(:topic AS text),
           jsonb_build_object(
               'event_id', c.event_id, 'event_type', '{MARGIN_TIER_CHANGED}', 'schema_version', 1,
               'occurred_at', CAST(:occurred_at AS text), 'correlation_id', c.correlation_id, 'causation_id', CAST(:cause_event_id AS text),
               'payload', jsonb_build_object(
                   'chain_id', c.chain_id, 'contract', c.contract, 'escrow_id', c.escrow_id::text,
                   'depositor', c.depositor, 'asset', c.asset_symbol,
                   'previous_tier', coalesce(c.previous_tier, 'HEALTHY'), 'tier', c.tier,
                   'health_factor', c.health_factor::text, 'price', c.price::text,
                   'collateral_amount', c.collateral_amount::text, 'obligation_usd', c.obligation_usd::text,
                   'price_event_id', c.price_event_id, 'snapshot_id', c.id)),
           jsonb_build_object('event_id', c.event_id, 'event_type', '{MARGIN_TIER_CHANGED}',
                              'schema_version', '1', 'correlation_id', c.correlation_id, 'tier', c.tier)
    FROM changed c
    ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT (SELECT count(*) FROM snapshots) AS assessed, (SELECT count(*) FROM changed) AS tier_changes
"""

_REFRESH_PORTFOLIOS = f"""
INSERT INTO {SCHEMA}.portfolios AS pf
    (depositor, open_positions, unpriced_positions, collateral_value_usd, risk_adjusted_collateral_usd,
     obligation_usd, health_factor, tier, updated_at)
SELECT t.depositor, t.open_positions, t.unpriced_positions, t.collateral_value_usd, t.adjusted, t.obligation,
       t.health_factor, (ARRAY['HEALTHY', 'WARNING', 'MARGIN_CALL', 'LIQUIDATION'])[1 + {_tier_rank("t.health_factor", "0")}],
       :now
FROM (
    SELECT a.depositor, a.open_positions, a.unpriced_positions, a.collateral_value_usd, a.adjusted, a.obligation,
           CASE WHEN a.obligation = 0 THEN 'Infinity'::numeric ELSE round(a.adjusted / a.obligation, 8) END
               AS health_factor
    FROM (
        SELECT d.depositor, count(p.escrow_id) AS open_positions,
               count(p.escrow_id) FILTER (WHERE ap.price IS NULL) AS unpriced_positions,
               coalesce(sum(p.collateral_amount * ap.price), 0) AS collateral_value_usd,
               coalesce(sum(p.collateral_amount * ap.price * p.liquidation_threshold), 0) AS adjusted,
               coalesce(sum(p.obligation_usd) FILTER (WHERE ap.price IS NOT NULL), 0) AS obligation
        FROM (SELECT DISTINCT p.depositor FROM {SCHEMA}.positions p WHERE {{scope}}) d
        LEFT JOIN {SCHEMA}.positions p ON p.depositor = d.depositor AND p.is_open
        LEFT JOIN {SCHEMA}.asset_prices ap ON ap.asset_symbol = p.asset_symbol
        GROUP BY d.depositor
    ) a
) t
ON CONFLICT (depositor) DO UPDATE SET
    open_positions = excluded.open_positions, unpriced_positions = excluded.unpriced_positions,
    collateral_value_usd = excluded.collateral_value_usd,
    risk_adjusted_collateral_usd = excluded.risk_adjusted_collateral_usd,
    obligation_usd = excluded.obligation_usd, health_factor = excluded.health_factor, tier = excluded.tier,
    updated_at = excluded.updated_at
"""

# Portfolios to refresh after each kind of pass.
DEPOSITORS_ON_ASSET = "p.asset_symbol = :asset AND p.is_open"
ONE_DEPOSITOR = "p.depositor = :depositor"


@dataclass(frozen=True)
class PassResult:
    """What one assessment pass did."""

    assessed: int
    tier_changes: int


def _tier_parameters(policy: RiskSettings) -> dict:
    thresholds = dict(policy.tier_thresholds)
    return {"warning": thresholds["WARNING"], "margin_call": thresholds["MARGIN_CALL"],
            "liquidation": thresholds["LIQUIDATION"], "hysteresis": policy.hysteresis}


def assess(conn: Connection, policy: RiskSettings, scope: str, scope_parameters: dict, *,
           cause_event_id: str, now: datetime) -> PassResult:
    """Recompute every open position in `scope` (ALL_OPEN_ON_ASSET or ONE_ESCROW) in one statement."""
    row = conn.execute(text(_ASSESS.format(scope=scope)), {
        **scope_parameters, **_tier_parameters(policy), "cause_event_id": cause_event_id, "now": now,
        "occurred_at": utc_iso(now), "topic": MARGIN_EVENTS_TOPIC,
    }).one()
    return PassResult(assessed=row.assessed, tier_changes=row.tier_changes)


def refresh_portfolios(conn: Connection, policy: RiskSettings, scope: str, scope_parameters: dict,
                       now: datetime) -> None:
    """Recompute the stored portfolio of every depositor in `scope` (DEPOSITORS_ON_ASSET or ONE_DEPOSITOR).

    The portfolio tier has no hysteresis: it is a reading, not an alert.
    """
    parameters = {**scope_parameters, **_tier_parameters(policy), "now": now}
    parameters.pop("hysteresis")
    conn.execute(text(_REFRESH_PORTFOLIOS.format(scope=scope)), parameters)
