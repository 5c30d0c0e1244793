"""The set-based assessment: one SQL statement recomputes every open position in scope at once.

For each position in scope (all open positions on an asset after a price update, or one escrow after
it changed) the statement computes the health factor at the asset's current price and the tier
with hysteresis, records a snapshot where one is due, and for each tier change writes the position's
tier and a margin event (its own outbox row, see shared/risk/margin_events.py), all in one statement.
No Python loop over positions: 100k positions are one round trip.

Each assessment is recorded once. A change of an open escrow snapshots its position every time (with a
margin event naming the snapshot when the tier changed). A price pass records only the tier changes,
each as its margin event alone (migration 0016): the event holds every value the health factor was
computed from, and a snapshot would repeat them. So the snapshots and the margin events hold every input
a position's health was computed from (`risk.position_history` reads both), the applied price records
how many positions its pass assessed, and any other health factor is recomputable
(`risk.position_health` gives the current ones).

The rules are shared/risk/tiers.py's (health factor, tiers, their ranks), called here as the SQL
functions it defines. A position moves to a worse tier as soon as its health factor falls below that
tier's threshold, but leaves a worse tier only once it is `hysteresis` above the threshold:
new = greatest(rank(hf), least(current rank, rank(hf - hysteresis))).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from shared.db import Connection, Statement, sql
from shared.risk import SCHEMA
from shared.risk.settings import RiskSettings
from shared.risk.tiers import BEST, rank_below_thresholds_sql, threshold_parameters

# Which positions a pass covers.
ALL_OPEN_ON_ASSET = "p.asset_symbol = :asset"
ONE_ESCROW = "p.chain_id = :chain_id AND p.contract = :contract AND p.escrow_id = :escrow_id"

# derive_event_id(cause, MarginTierChanged, "chain_id:contract:escrow_id"), computed in SQL.
_EVENT_ID = ("'MarginTierChanged:' || left(encode(sha256(convert_to("
             "CAST(:cause_event_id AS text) || '|MarginTierChanged|' || c.chain_id || ':' || c.contract || ':' "
             "|| c.escrow_id, 'UTF8')), 'hex'), 32)")

# Positions one statement covers: a pass over more runs in chunks by key range, so no statement nears the
# database socket timeout (a crash over 1M positions took 33 s as one statement) while the pass stays one
# transaction.
PASS_CHUNK_POSITIONS = 100_000
# Below every real key: where the first chunk starts.
_BEFORE_ALL_KEYS = {"after_chain_id": -1, "after_contract": "", "after_escrow_id": -1}
# Memory a pass's statements may sort and hold their intermediate rows in (the transaction's own
# setting): a chunk's assessed positions and tier changes stay in memory instead of temporary files.
# Measured on a crash over 100k positions: the pass took about a tenth less than at the default 4MB.
PASS_WORK_MEM = "64MB"

# One statement a chunk: assess the next PASS_CHUNK_POSITIONS positions in scope (by key), record them
# ({recorded}: _SNAPSHOT_EACH when an escrow changed, _TIER_CHANGES_ONLY for a price pass); for each tier
# change, write the position's tier and the margin event (its own outbox row, published after the commit
# by shared/risk/margin_events.py). The chunk's size, tier changes and last key come back.
_ASSESS_CHUNK = f"""
WITH assessed AS (
    SELECT p.chain_id, p.contract, p.escrow_id, p.depositor, p.asset_symbol, p.collateral_amount,
           p.obligation_usd, p.tier AS previous_tier, p.correlation_id, ap.price, ap.price_event_id,
           {SCHEMA}.health_factor(p.collateral_amount * ap.price * p.liquidation_threshold,
                                  p.obligation_usd) AS health_factor
    FROM {SCHEMA}.positions p JOIN {SCHEMA}.asset_prices ap ON ap.asset_symbol = p.asset_symbol
    WHERE p.is_open AND {{scope}}
      AND (p.chain_id, p.contract, p.escrow_id) > (:after_chain_id, :after_contract, :after_escrow_id)
    ORDER BY p.chain_id, p.contract, p.escrow_id
    LIMIT :chunk
), rated AS (
    SELECT a.*, {SCHEMA}.tier_named(greatest(
               {rank_below_thresholds_sql("a.health_factor")},
               least({SCHEMA}.tier_rank(a.previous_tier),
                     {rank_below_thresholds_sql("a.health_factor", "_recovered")}))) AS tier
    FROM assessed a
), recorded AS ({{recorded}}
), changed AS (
    SELECT c.*, {_EVENT_ID} AS event_id FROM recorded c WHERE c.tier <> coalesce(c.previous_tier, '{BEST}')
), tier_updates AS (
    UPDATE {SCHEMA}.positions p SET tier = c.tier, updated_at = :now FROM changed c
    WHERE p.chain_id = c.chain_id AND p.contract = c.contract AND p.escrow_id = c.escrow_id
), events AS (
    INSERT INTO {SCHEMA}.margin_events
        (event_id, chain_id, contract, escrow_id, depositor, previous_tier, tier, health_factor, price,
         snapshot_id, correlation_id, cause_event_id, occurred_at, asset_symbol, collateral_amount,
         obligation_usd, price_event_id)
    SELECT c.event_id, c.chain_id, c.contract, c.escrow_id, c.depositor, coalesce(c.previous_tier, '{BEST}'),
           c.tier, c.health_factor, c.price, c.snapshot_id, c.correlation_id, :cause_event_id, :now, c.asset_symbol,
           c.collateral_amount, c.obligation_usd, c.price_event_id
    FROM changed c
)
SELECT (SELECT count(*) FROM assessed) AS assessed, (SELECT count(*) FROM changed) AS tier_changes,
       last.chain_id, last.contract, last.escrow_id
FROM (SELECT chain_id, contract, escrow_id FROM assessed
      ORDER BY chain_id DESC, contract DESC, escrow_id DESC LIMIT 1) last
"""

# An escrow changed: snapshot its position whatever the tier (the snapshot's id goes in the margin event).
_SNAPSHOT_EACH = f"""
    INSERT INTO {SCHEMA}.margin_health_snapshots
        (chain_id, contract, escrow_id, depositor, asset_symbol, collateral_amount, obligation_usd, price,
         collateral_value_usd, health_factor, previous_tier, tier, price_event_id, correlation_id,
         cause_event_id, taken_at)
    SELECT r.chain_id, r.contract, r.escrow_id, r.depositor, r.asset_symbol, r.collateral_amount,
           r.obligation_usd, r.price, r.collateral_amount * r.price, r.health_factor, r.previous_tier, r.tier,
           r.price_event_id, r.correlation_id, :cause_event_id, :now
    FROM rated r
    RETURNING *, id AS snapshot_id"""
# A price moved: the tier changes only, recorded by their margin events (no snapshot, no snapshot id).
_TIER_CHANGES_ONLY = f"""
    SELECT r.*, CAST(NULL AS bigint) AS snapshot_id FROM rated r
    WHERE r.tier <> coalesce(r.previous_tier, '{BEST}')"""


@dataclass(frozen=True)
class PassResult:
    """What one assessment pass did."""

    assessed: int
    tier_changes: int


@functools.cache
def _chunk_statement(scope: str) -> Statement:
    """The chunk statement of `scope`, built once (parsing its text for parameters costs every escrow
    change as much as a short statement's round trip)."""
    return sql(_ASSESS_CHUNK.format(
        scope=scope, recorded=_SNAPSHOT_EACH if scope == ONE_ESCROW else _TIER_CHANGES_ONLY))


def assess(conn: Connection, policy: RiskSettings, scope: str, scope_parameters: dict, *,
           cause_event_id: str, now: datetime) -> PassResult:
    """Recompute every open position in `scope` (ALL_OPEN_ON_ASSET or ONE_ESCROW): one statement per
    chunk of PASS_CHUNK_POSITIONS positions, in key order, in the caller's transaction. One escrow's
    pass snapshots its position whatever the tier; a pass over an asset records the tier changes only,
    as their margin events."""
    chunk = _chunk_statement(scope)
    parameters = {**scope_parameters, **threshold_parameters(dict(policy.tier_thresholds), policy.hysteresis),
                  "cause_event_id": cause_event_id, "now": now, "chunk": PASS_CHUNK_POSITIONS}
    if scope == ALL_OPEN_ON_ASSET:
        conn.execute(sql(f"SET LOCAL work_mem = '{PASS_WORK_MEM}'"))
    after = _BEFORE_ALL_KEYS
    assessed = tier_changes = 0
    while True:
        taken = conn.execute(chunk, {**parameters, **after}).first()
        if taken is None:
            break
        assessed += taken.assessed
        tier_changes += taken.tier_changes
        if taken.assessed < PASS_CHUNK_POSITIONS:
            break
        after = {"after_chain_id": taken.chain_id, "after_contract": taken.contract,
                 "after_escrow_id": taken.escrow_id}
    return PassResult(assessed=assessed, tier_changes=tier_changes)
