"""assess-margin's handler: escrow state changes and price updates, each applied exactly once.

Both arrive out of order at times. A state change not newer than the projection's `sequence` for its
escrow, or a price not newer than the stored `sequence` for its asset, changes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared import topics
from shared.addresses import checksum_address
from shared.db import Connection, sql
from shared.envelope import Envelope, derive_event_id
from shared.errors import InvalidEvent
from shared.events import (
    ESCROW_STATE_CHANGED,
    MARGIN_ALERT_RETRACTED,
    PRICE_UPDATED,
    EscrowStateChangedV1,
    PriceUpdatedV1,
)
from shared.messaging.consumer import Outgoing
from shared.pricing.guards import published_price_problem
from shared.risk import SCHEMA
from shared.risk.assessment import ALL_OPEN_ON_ASSET, ONE_ESCROW, assess
from shared.risk.portfolio import refresh_exposures
from shared.risk.settings import RiskSettings
from shared.risk.tiers import ALERTED_TIERS

log = logging.getLogger(__name__)

OPEN_STATES = frozenset({"created", "approved"})
VOIDED = "voided"
# The columns an escrow change sets from settle's record (what the reconciler compares).
PROJECTED = ("depositor", "asset_token", "collateral_amount", "obligation_usd", "state", "is_open")
# A position in one of these tiers has had a margin event published about it.


# A position's key columns.
_KEY = ("chain_id", "contract", "escrow_id")
# The position's tier before the change, locked for it.
_TIER_BEFORE = sql(f"SELECT tier FROM {SCHEMA}.positions WHERE chain_id = :chain_id AND contract = :contract "
                   "AND escrow_id = :escrow_id FOR UPDATE")


@functools.cache
def _projection(columns: tuple[str, ...], *, forget_tier: bool) -> Any:
    """The upsert of an escrow change's `columns` into the projection, built once per set of columns."""
    # The correlation id is settle's, the escrow's creation log's: it changes only when a reorg voided
    # the escrow and its id was reused. A voided escrow forgets its tier, so a reused id starts fresh.
    changed = [f"{name} = EXCLUDED.{name}" for name in columns if name not in _KEY]
    if forget_tier:
        changed.append("tier = NULL")
    return sql(
        f"INSERT INTO {SCHEMA}.positions AS p ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + name for name in columns)}) "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {', '.join(changed)}, updated_at = now() "
        # The change at a sequence defines the projection at that sequence: one already applied
        # changes nothing, unless the row no longer says what it said (restored on a replay).
        f"WHERE p.sequence < EXCLUDED.sequence OR (p.sequence = EXCLUDED.sequence "
        f"AND ({', '.join('p.' + name for name in PROJECTED)}) IS DISTINCT FROM "
        f"({', '.join('EXCLUDED.' + name for name in PROJECTED)})) RETURNING sequence")


_PRICE_FOR_UPDATE = sql(f"SELECT price, sequence FROM {SCHEMA}.asset_prices WHERE asset_symbol = :asset FOR UPDATE")
# An asset's price, unless the one stored is as new or newer.
_STORE_PRICE = sql(
    f"INSERT INTO {SCHEMA}.asset_prices AS a (asset_symbol, price, sequence, price_event_id, observed_at) "
    "VALUES (:asset_symbol, :price, :sequence, :price_event_id, :observed_at) ON CONFLICT (asset_symbol) "
    "DO UPDATE SET price = EXCLUDED.price, sequence = EXCLUDED.sequence, price_event_id = EXCLUDED.price_event_id, "
    "observed_at = EXCLUDED.observed_at WHERE a.sequence < EXCLUDED.sequence RETURNING sequence")
_RECORD_APPLIED_PRICE = sql(
    f"INSERT INTO {SCHEMA}.applied_prices (asset_symbol, price, sequence, price_event_id, observed_at, provenance, "
    "positions_assessed, tier_changes) VALUES (:asset_symbol, :price, :sequence, :price_event_id, :observed_at, "
    "CAST(:provenance AS jsonb), :positions_assessed, :tier_changes)")


class RiskEngine:
    """Applies settle's escrow changes and fetch-price's prices to the risk schema."""

    def __init__(self, policy: RiskSettings) -> None:
        self.policy = policy
        self.assets_by_token = {asset.token: asset for asset in policy.assets}
        self.assets_by_symbol = {asset.symbol: asset for asset in policy.assets}

    def handle(self, conn: Connection, envelope: Envelope) -> Outgoing:
        """The consumer's handler; margin events go to the outbox from SQL, retractions are returned."""
        if envelope.event_type == ESCROW_STATE_CHANGED:
            return self.apply_escrow_change(conn, envelope)
        if envelope.event_type == PRICE_UPDATED:
            self.apply_price(conn, envelope)
        else:
            raise InvalidEvent(f"assess-margin does not consume {envelope.event_type}", event_id=envelope.event_id)
        return []

    def apply_escrow_change(self, conn: Connection, envelope: Envelope) -> Outgoing:
        """Sync one escrow into the projection, then reassess it and refresh its depositor's exposures.

        An escrow a reorganisation voided leaves the risk set; if it had been alerted on (a tier worse
        than HEALTHY was published), a retraction goes out so the user hears that the alert is void.
        """
        p = envelope.typed(EscrowStateChangedV1)
        asset = self.assets_by_token.get(checksum_address(p.asset))
        if asset is None:
            log.warning("escrow collateral is not a configured asset; kept but not assessed",
                        extra={"escrow_id": p.escrow_id, "asset": p.asset})
        key = {"chain_id": p.chain_id, "contract": p.contract, "escrow_id": Decimal(p.escrow_id)}
        row = {
            **key,
            "depositor": p.depositor,
            "asset_token": p.asset,
            "asset_symbol": asset.symbol if asset else None,
            "collateral_amount": Decimal(p.amount).scaleb(-asset.decimals) if asset else Decimal(p.amount),
            "obligation_usd": Decimal(p.obligation_usd),
            "liquidation_threshold": asset.liquidation_threshold if asset else None,
            "state": p.state,
            "is_open": p.state in OPEN_STATES,
            "sequence": p.sequence,
            "correlation_id": envelope.correlation_id,
        }
        before = conn.execute(_TIER_BEFORE, key).first()
        applied = conn.execute(_projection(tuple(row), forget_tier=p.state == VOIDED), row).first()
        if applied is None:
            log.info("escrow change not newer than the projection; ignored",
                     extra={"escrow_id": p.escrow_id, "sequence": p.sequence})
            return []
        now = datetime.now(UTC)
        if row["is_open"] and asset is not None:
            result = assess(conn, self.policy, ONE_ESCROW, key, cause_event_id=envelope.event_id, now=now)
            log.info("escrow assessed", extra={"escrow_id": p.escrow_id, "tier_changes": result.tier_changes})
        else:
            log.info("escrow left the risk set", extra={"escrow_id": p.escrow_id, "state": p.state})
        refresh_exposures(conn, p.depositor, now)
        if p.state == VOIDED and before is not None and before.tier in ALERTED_TIERS:
            return [_retraction(envelope, before.tier)]
        return []

    def apply_price(self, conn: Connection, envelope: Envelope) -> None:
        """Store the price, then reassess every open position on its asset in one pass.

        Portfolios need no work here: they value the stored exposures at the current price when read.
        """
        p = envelope.typed(PriceUpdatedV1)
        asset = self.assets_by_symbol.get(p.asset)
        if asset is None:
            raise InvalidEvent(f"price for unconfigured asset {p.asset}", event_id=envelope.event_id)
        if p.token != asset.token:
            raise InvalidEvent(f"price names token {p.token}, {asset.symbol} is {asset.token}",
                               event_id=envelope.event_id)
        current = conn.execute(_PRICE_FOR_UPDATE, {"asset": asset.symbol}).first()
        if current is not None and p.sequence <= current.sequence:
            log.info("price not newer than the one applied; ignored",
                     extra={"asset": p.asset, "sequence": p.sequence})
            return
        # Refused here, the transaction rolls back: the ordering does not advance, the next genuine price applies.
        problem = published_price_problem(Decimal(p.price), [Decimal(source.price) for source in p.sources],
                                          p.jump_confirmed, current.price if current else None,
                                          self.policy.max_jump)
        if problem:
            raise InvalidEvent(f"price refused: {problem}", event_id=envelope.event_id)
        price = {"asset_symbol": p.asset, "price": Decimal(p.price), "sequence": p.sequence,
                 "price_event_id": envelope.event_id, "observed_at": datetime.fromisoformat(p.observed_at)}
        applied = conn.execute(_STORE_PRICE, price).first()
        if applied is None:
            log.info("price not newer than the one applied; ignored",
                     extra={"asset": p.asset, "sequence": p.sequence})
            return
        now = datetime.now(UTC)
        result = assess(conn, self.policy, ALL_OPEN_ON_ASSET, {"asset": p.asset},
                        cause_event_id=envelope.event_id, now=now)
        # The record of the price and of its pass: the pass snapshots tier changes only, so this is where
        # the positions it assessed are counted.
        provenance = {"sources": envelope.payload["sources"],  # canonical: validated on the way in
                      "reason": p.reason}
        conn.execute(_RECORD_APPLIED_PRICE, {**price, "provenance": json.dumps(provenance),
                                             "positions_assessed": result.assessed,
                                             "tier_changes": result.tier_changes})
        log.info("positions reassessed at a new price", extra={
            "asset": p.asset, "price": p.price, "assessed": result.assessed,
            "tier_changes": result.tier_changes})


def _retraction(change: Envelope, tier: str) -> tuple[str, Envelope]:
    """The MarginAlertRetracted event for an alerted escrow that a reorganisation voided."""
    p = change.typed(EscrowStateChangedV1)
    return topics.MARGIN_EVENTS, Envelope(
        event_id=derive_event_id(change.event_id, MARGIN_ALERT_RETRACTED),
        event_type=MARGIN_ALERT_RETRACTED,
        schema_version=1,
        occurred_at=change.occurred_at,
        correlation_id=change.correlation_id,
        causation_id=change.event_id,
        payload={"chain_id": p.chain_id, "contract": p.contract, "escrow_id": p.escrow_id,
                 "depositor": p.depositor, "retracted_tier": tier,
                 "reason": "a chain reorganisation erased the escrow; its alerts no longer apply"},
    )
