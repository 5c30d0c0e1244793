"""One `prices.tick`: fetch what is due, guard it, record it, publish what moved.

A tick carries no data; its arrival is the trigger, and the TTL cache is what makes a duplicate or a
concurrent tick harmless: an asset fetched less than `cache_ttl_seconds` ago is skipped, checked again
under its row lock before anything is written. Fetching happens outside the transaction; a source that
keeps failing raises before anything is written, so Pub/Sub redelivers the tick.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import UTC, datetime, timedelta

from shared import topics
from shared.assets import Asset
from shared.db import Connection, get_engine, sql, transaction
from shared.envelope import Envelope, utc_iso
from shared.events import PRICE_UPDATED
from shared.messaging import outbox
from shared.pricing import SCHEMA
from shared.pricing.chainlink import ChainlinkReader
from shared.pricing.coingecko import CoinGeckoClient
from shared.pricing.guards import ACCEPTED, HELD, AssetPriceState, Decision, Reading, decide
from shared.pricing.quotes import Quote
from shared.pricing.settings import PriceSettings
from shared.settings import Settings

log = logging.getLogger(__name__)

_LAST_FETCHES = sql(f"SELECT asset, last_fetched_at FROM {SCHEMA}.asset_state")
_ADD_ASSET = sql(f"INSERT INTO {SCHEMA}.asset_state (asset) VALUES (:asset) ON CONFLICT DO NOTHING")
_ASSET_FOR_UPDATE = sql(f"SELECT * FROM {SCHEMA}.asset_state WHERE asset = :asset FOR UPDATE")
_OBSERVATION = ("source", "price", "source_updated_at", "round_id", "status", "age_seconds", "reason")
_RECORD_DECISION = sql(
    f"INSERT INTO {SCHEMA}.decisions (fetch_id, asset, status, price, reason, published_event_id, decided_at) "
    "VALUES (:fetch_id, :asset, :status, :price, :reason, :published_event_id, :decided_at)")


@functools.cache
def _record_observations(count: int):
    """`count` readings of one fetch of one asset, their columns numbered (`price_0`, `price_1`...)."""
    rows = ", ".join(f"(:fetch_id, :asset, {', '.join(f':{column}_{n}' for column in _OBSERVATION)}, :fetched_at)"
                     for n in range(count))
    return sql(f"INSERT INTO {SCHEMA}.observations (fetch_id, asset, {', '.join(_OBSERVATION)}, fetched_at) "
               f"VALUES {rows}")


@functools.cache
def _update_asset(columns: tuple[str, ...]):
    return sql(f"UPDATE {SCHEMA}.asset_state SET {', '.join(f'{column} = :{column}' for column in columns)} "
               "WHERE asset = :asset")



class PriceService:
    """fetch-price's work, bound to one instance's settings and clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prices = settings.part(PriceSettings)
        self.coingecko = CoinGeckoClient(self.prices)
        self.chainlink = ChainlinkReader(self.prices.rpc_url)

    def run_tick(self) -> list[Decision]:
        """Fetch, decide, store and publish for every asset due; return the decisions made.

        The outbox is drained on every tick, due or not: an event committed by a tick that crashed
        before publishing goes out with the next one.
        """
        engine = get_engine(self.settings.database)
        try:
            return self._fetch_and_decide(engine)
        finally:
            outbox.publish_pending(engine, SCHEMA, self.settings.project_id, self.settings.publish_timeout_seconds)

    def _fetch_and_decide(self, engine) -> list[Decision]:
        due = self._assets_due(engine, datetime.now(UTC))
        if not due:
            log.info("every asset was fetched within its TTL; nothing to do")
            return []
        quotes = self._fetch(due)
        fetch_id = str(uuid.uuid4())
        made = []
        with transaction(engine) as conn:
            now = datetime.now(UTC)
            for asset in due:
                decision = self._decide_and_record(conn, asset, quotes[asset.symbol], fetch_id, now)
                if decision:
                    made.append(decision)
        return made

    def _assets_due(self, engine, now: datetime) -> list[Asset]:
        horizon = now - timedelta(seconds=self.prices.cache_ttl_seconds)
        with transaction(engine) as conn:
            fetched: dict[str, datetime | None] = dict(conn.execute(_LAST_FETCHES).tuples().all())
        return [a for a in self.prices.assets if (fetched.get(a.symbol) or horizon) <= horizon]

    def _fetch(self, assets: list[Asset]) -> dict[str, list[Quote]]:
        coingecko = self.coingecko.fetch(assets)
        return {asset.symbol: [coingecko[asset.symbol], self.chainlink.latest(asset)] for asset in assets}

    def _decide_and_record(self, conn: Connection, asset: Asset, quotes: list[Quote], fetch_id: str,
                           now: datetime) -> Decision | None:
        conn.execute(_ADD_ASSET, {"asset": asset.symbol})
        state = conn.execute(_ASSET_FOR_UPDATE, {"asset": asset.symbol}).mappings().one()
        horizon = now - timedelta(seconds=self.prices.cache_ttl_seconds)
        if state["last_fetched_at"] is not None and state["last_fetched_at"] > horizon:
            log.info("another tick fetched this asset meanwhile; skipped", extra={"asset": asset.symbol})
            return None
        decision = decide(
            asset, quotes,
            AssetPriceState(last_good_price=state["last_good_price"], held_price=state["held_price"],
                            last_published_price=state["last_published_price"],
                            last_published_at=state["last_published_at"]),
            now, max_source_spread=self.prices.max_source_spread, max_jump=self.prices.max_jump,
        )
        observed: dict = {"fetch_id": fetch_id, "asset": asset.symbol, "fetched_at": now}
        for n, r in enumerate(decision.readings):  # one per source: never none
            observed.update({
                f"source_{n}": r.quote.source, f"price_{n}": r.quote.price,
                f"source_updated_at_{n}": r.quote.updated_at, f"round_id_{n}": r.quote.round_id,
                f"status_{n}": r.status, f"reason_{n}": r.reason,
                f"age_seconds_{n}": round(r.age_seconds, 3) if r.age_seconds is not None else None})
        conn.execute(_record_observations(len(decision.readings)), observed)
        changes: dict = {"last_fetched_at": now}
        if decision.status == ACCEPTED:
            changes.update(last_good_price=decision.price, last_good_at=now, held_price=None, held_at=None)
        elif decision.status == HELD:
            changes.update(held_price=decision.price, held_at=now)
        event_id = None
        if decision.publish:
            sequence = state["sequence"] + 1
            envelope = price_updated(asset, decision, sequence, now)
            outbox.enqueue(conn, SCHEMA, topics.MARKET_PRICES, envelope, {"asset": asset.symbol})
            event_id = envelope.event_id
            changes.update(sequence=sequence, last_published_price=decision.price, last_published_at=now)
        conn.execute(_update_asset(tuple(changes)), {**changes, "asset": asset.symbol})
        conn.execute(_RECORD_DECISION, {
            "fetch_id": fetch_id, "asset": asset.symbol, "status": decision.status, "price": decision.price,
            "reason": decision.reason, "published_event_id": event_id, "decided_at": now})
        log.info("price decided", extra={"asset": asset.symbol, "status": decision.status,
                                         "price": str(decision.price), "reason": decision.reason,
                                         "published_event_id": event_id})
        return decision


def price_updated(asset: Asset, decision: Decision, sequence: int, now: datetime) -> Envelope:
    """The PriceUpdated event for a published decision; its id is the asset's publish sequence."""
    event_id = f"{PRICE_UPDATED}:{asset.symbol}:{sequence}"
    return Envelope(
        event_id=event_id,
        event_type=PRICE_UPDATED,
        schema_version=1,
        occurred_at=utc_iso(now),
        correlation_id=event_id,
        causation_id=None,
        payload={
            "asset": asset.symbol,
            "token": asset.token,
            "price": str(decision.price),
            "sequence": sequence,
            "observed_at": utc_iso(now),
            "reason": decision.reason,
            "sources": [_provenance(r) for r in decision.fresh_readings],
            "jump_confirmed": decision.jump_confirmed,
        },
    )


def _provenance(reading: Reading) -> dict:
    """One fresh source as published: its price, round (Chainlink), update time and age."""
    quote = reading.quote
    assert quote.updated_at is not None and reading.age_seconds is not None, "a fresh reading has both"
    return {"source": quote.source, "price": str(quote.price),
            "round_id": str(quote.round_id) if quote.round_id is not None else None,
            "updated_at": utc_iso(quote.updated_at), "age_seconds": round(reading.age_seconds, 3)}
