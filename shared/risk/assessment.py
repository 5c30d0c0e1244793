"""The set-based assessment: SQL statements recompute every open position in scope at once.

For each position in scope (all open positions on an asset after a price update, or one escrow after
it changed) the first statement computes the health factor at the asset's current price and the tier
with hysteresis, and writes a snapshot; the second takes the snapshots whose tier changed and writes
the position's tier and a margin event (its own outbox row, see shared/risk/margin_events.py). No
Python loop over positions: 100k positions are two round trips, and the second touches only the tier
changes.

The rules are shared/risk/tiers.py's (health factor, tiers, their ranks), called here as the SQL
functions it defines. A position moves to a worse tier as soon as its health factor falls below that
tier's threshold, but leaves a worse tier only once it is `hysteresis` above the threshold:
new = greatest(rank(hf), least(current rank, rank(hf - hysteresis))).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.risk.settings import RiskSettings
from shared.risk.tables import SCHEMA
from shared.risk.tiers import BEST, rank_below_thresholds_sql, threshold_parameters

# Which positions a pass covers.
ALL_OPEN_ON_ASSET = "p.asset_symbol = :asset"
ONE_ESCROW = "p.chain_id = :chain_id AND p.contract = :contract AND p.escrow_id = :escrow_id"

# derive_event_id(cause, MarginTierChanged, "chain_id:contract:escrow_id"), computed in SQL.
_EVENT_ID = ("'MarginTierChanged:' || left(encode(sha256(convert_to("
             "CAST(:cause_event_id AS text) || '|MarginTierChanged|' || c.chain_id || ':' || c.contract || ':' "
             "|| c.escrow_id, 'UTF8')), 'hex'), 32)")

# Positions one pair of statements covers: a pass over more runs in chunks by key range, so no statement
# nears the database socket timeout (a crash over 1M positions took 33 s as one statement) while the
# pass stays one transaction.
PASS_CHUNK_POSITIONS = 100_000
# Below every real key: where the first chunk starts.
_BEFORE_ALL_KEYS = {"after_chain_id": -1, "after_contract": "", "after_escrow_id": -1}

# Statement 1: a snapshot of the next chunk of positions in scope (by key), with their new tiers. Only
# ids and the chunk's last key come back.
_SNAPSHOT = f"""
WITH taken AS (
    INSERT INTO {SCHEMA}.margin_health_snapshots
        (chain_id, contract, escrow_id, depositor, asset_symbol, collateral_amount, obligation_usd, price,
         collateral_value_usd, health_factor, previous_tier, tier, price_event_id, correlation_id,
         cause_event_id, taken_at)
    SELECT s.chain_id, s.contract, s.escrow_id, s.depositor, s.asset_symbol, s.collateral_amount,
           s.obligation_usd, s.price, s.collateral_amount * s.price, s.health_factor, s.previous_tier,
           {SCHEMA}.tier_named(greatest(
               {rank_below_thresholds_sql("s.health_factor")},
               least({SCHEMA}.tier_rank(s.previous_tier),
                     {rank_below_thresholds_sql("s.health_factor", "_recovered")}))),
           s.price_event_id, s.correlation_id, :cause_event_id, :now
    FROM (
        SELECT p.chain_id, p.contract, p.escrow_id, p.depositor, p.asset_symbol, p.collateral_amount,
               p.obligation_usd, p.tier AS previous_tier, p.correlation_id, ap.price, ap.price_event_id,
               {SCHEMA}.health_factor(p.collateral_amount * ap.price * p.liquidation_threshold,
                                      p.obligation_usd) AS health_factor
        FROM {SCHEMA}.positions p JOIN {SCHEMA}.asset_prices ap ON ap.asset_symbol = p.asset_symbol
        WHERE p.is_open AND {{scope}}
          AND (p.chain_id, p.contract, p.escrow_id) > (:after_chain_id, :after_contract, :after_escrow_id)
        ORDER BY p.chain_id, p.contract, p.escrow_id
        LIMIT :chunk
    ) s
    RETURNING id, chain_id, contract, escrow_id
)
SELECT (SELECT count(*) FROM taken) AS assessed, (SELECT min(id) FROM taken) AS first_id,
       (SELECT max(id) FROM taken) AS last_id, last.chain_id, last.contract, last.escrow_id
FROM (SELECT chain_id, contract, escrow_id FROM taken
      ORDER BY chain_id DESC, contract DESC, escrow_id DESC LIMIT 1) last
"""

# Statement 2: for the snapshots of statement 1 whose tier changed, the position's tier and the margin
# event. The event is its own outbox row: shared/risk/margin_events.py publishes it after the commit.
_EMIT_TIER_CHANGES = f"""
WITH changed AS (
    SELECT c.*, {_EVENT_ID} AS event_id
    FROM {SCHEMA}.margin_health_snapshots c
    WHERE c.taken_at = :now AND c.id BETWEEN :first_id AND :last_id AND c.cause_event_id = :cause_event_id
      AND c.tier <> coalesce(c.previous_tier, '{BEST}')
), tier_updates AS (
    UPDATE {SCHEMA}.positions p SET tier = c.tier, updated_at = :now FROM changed c
    WHERE p.chain_id = c.chain_id AND p.contract = c.contract AND p.escrow_id = c.escrow_id
), events AS (
    INSERT INTO {SCHEMA}.margin_events
        (event_id, chain_id, contract, escrow_id, depositor, previous_tier, tier, health_factor, price,
         snapshot_id, correlation_id, cause_event_id, occurred_at, asset_symbol, collateral_amount,
         obligation_usd, price_event_id)
    SELECT c.event_id, c.chain_id, c.contract, c.escrow_id, c.depositor, coalesce(c.previous_tier, '{BEST}'),
           c.tier, c.health_factor, c.price, c.id, c.correlation_id, :cause_event_id, :now, c.asset_symbol,
           c.collateral_amount, c.obligation_usd, c.price_event_id
    FROM changed c
)
SELECT count(*) AS tier_changes FROM changed
"""

@dataclass(frozen=True)
class PassResult:
    """What one assessment pass did."""

    assessed: int
    tier_changes: int


def assess(conn: Connection, policy: RiskSettings, scope: str, scope_parameters: dict, *,
           cause_event_id: str, now: datetime) -> PassResult:
    """Recompute every open position in `scope` (ALL_OPEN_ON_ASSET or ONE_ESCROW): two statements per
    chunk of PASS_CHUNK_POSITIONS positions, in key order, in the caller's transaction."""
    snapshot = text(_SNAPSHOT.format(scope=scope))
    parameters = {**scope_parameters, **threshold_parameters(dict(policy.tier_thresholds), policy.hysteresis),
                  "cause_event_id": cause_event_id, "now": now, "chunk": PASS_CHUNK_POSITIONS}
    after = _BEFORE_ALL_KEYS
    assessed = tier_changes = 0
    while True:
        taken = conn.execute(snapshot, {**parameters, **after}).first()
        if taken is None:
            break
        assessed += taken.assessed
        tier_changes += conn.execute(text(_EMIT_TIER_CHANGES), {
            "first_id": taken.first_id, "last_id": taken.last_id, "cause_event_id": cause_event_id, "now": now,
        }).scalar_one()
        if taken.assessed < PASS_CHUNK_POSITIONS:
            break
        after = {"after_chain_id": taken.chain_id, "after_contract": taken.contract,
                 "after_escrow_id": taken.escrow_id}
    return PassResult(assessed=assessed, tier_changes=tier_changes)
