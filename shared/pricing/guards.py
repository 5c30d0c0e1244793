"""The price guards (pure): staleness, cross-source agreement, the per-round jump bound, publishing.

Modelled on Chainlink feeds (a heartbeat and a deviation threshold; `updatedAt` checked against the
heartbeat) and Liquity's PriceFeed (a last good price; a jump beyond a bound is not trusted until it
is confirmed; sources must agree).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from shared.assets import Asset
from shared.pricing.quotes import Quote

# A source reading's verdict.
FRESH = "fresh"
STALE = "stale"
INVALID = "invalid"

# A decision's status.
ACCEPTED = "accepted"  # a good price; published when it moved enough or the heartbeat elapsed
SUSPECT = "suspect"  # fresh sources disagree: recorded, not published
HELD = "held"  # jumped beyond the bound: recorded, published only once the next round confirms it
UNAVAILABLE = "unavailable"  # no fresh source


@dataclass(frozen=True)
class Reading:
    """A quote with its verdict and age at decision time."""

    quote: Quote
    status: str
    age_seconds: float | None
    reason: str | None = None


@dataclass(frozen=True)
class AssetPriceState:
    """What the guards remember per asset between ticks."""

    last_good_price: Decimal | None = None
    held_price: Decimal | None = None
    last_published_price: Decimal | None = None
    last_published_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What one tick concluded about one asset."""

    status: str
    price: Decimal | None
    reason: str
    readings: tuple[Reading, ...]
    publish: bool = False
    # A move beyond the jump bound that a second round confirmed: consumers may apply it.
    jump_confirmed: bool = False

    @property
    def fresh_readings(self) -> tuple[Reading, ...]:
        return tuple(r for r in self.readings if r.status == FRESH)


def read_quote(asset: Asset, quote: Quote, now: datetime) -> Reading:
    """Judge one quote: invalid without a price, stale when older than the asset's heartbeat."""
    if quote.price is None or quote.updated_at is None:
        return Reading(quote, INVALID, None, quote.error or "no price")
    age = (now - quote.updated_at).total_seconds()
    if age > asset.heartbeat_seconds:
        return Reading(quote, STALE, age, f"updated {age:.0f}s ago, heartbeat {asset.heartbeat_seconds}s")
    return Reading(quote, FRESH, age)


def decide(asset: Asset, quotes: list[Quote], state: AssetPriceState, now: datetime, *,
           max_source_spread: Decimal, max_jump: Decimal) -> Decision:
    """Apply the guards to this tick's quotes for `asset`."""
    readings = tuple(read_quote(asset, quote, now) for quote in quotes)
    fresh = [r.quote.price for r in readings if r.status == FRESH and r.quote.price is not None]
    if not fresh:
        why = "; ".join(f"{r.quote.source}: {r.status} ({r.reason})" for r in readings)
        return Decision(UNAVAILABLE, None, f"no fresh source: {why}", readings)
    low, high = min(fresh), max(fresh)
    spread = high / low - 1
    if spread > max_source_spread:
        return Decision(SUSPECT, statistics.median(fresh),
                        f"sources disagree by {spread:.2%} (bound {max_source_spread:.2%})", readings)
    price = statistics.median(fresh)
    if state.last_good_price is not None:
        jump = abs(price / state.last_good_price - 1)
        if jump > max_jump:
            confirmed = state.held_price is not None and abs(price / state.held_price - 1) <= max_source_spread
            if not confirmed:
                return Decision(HELD, price, f"moved {jump:.2%} from the last good price {state.last_good_price} "
                                f"(bound {max_jump:.2%}); held until the next round confirms it", readings)
            return Decision(ACCEPTED, price, f"jump of {jump:.2%} confirmed by a second round", readings,
                            publish=True, jump_confirmed=True)
    publish, why = _publish_reason(asset, price, state, now)
    return Decision(ACCEPTED, price, why, readings, publish=publish)


def _publish_reason(asset: Asset, price: Decimal, state: AssetPriceState, now: datetime) -> tuple[bool, str]:
    if state.last_published_price is None or state.last_published_at is None:
        return True, "first price"
    deviation = abs(price / state.last_published_price - 1)
    if deviation > asset.deviation_threshold:
        return True, f"moved {deviation:.2%} (threshold {asset.deviation_threshold:.2%})"
    elapsed = (now - state.last_published_at).total_seconds()
    if elapsed >= asset.heartbeat_seconds:
        return True, f"heartbeat: {elapsed:.0f}s since the last publish"
    due_in = asset.heartbeat_seconds - elapsed
    return False, f"moved {deviation:.2%}, within the threshold; heartbeat due in {due_in:.0f}s"


def published_price_problem(price: Decimal, source_prices: list[Decimal], jump_confirmed: bool,
                            last_applied: Decimal | None, max_jump: Decimal) -> str | None:
    """Why a consumer must not apply a published price, or None (assess-margin's check on PriceUpdated).

    The schema already holds the price and every source's price positive and finite. Here: the price
    is what fetch-price would have published from those sources (their median), and a move beyond
    the jump bound from the last applied price carries fetch-price's confirmation.
    """
    if not source_prices:
        return "carries no source prices (no provenance)"
    if price != statistics.median(source_prices):
        return f"price {price} is not the median of its sources {', '.join(map(str, source_prices))}"
    if last_applied is not None and not jump_confirmed:
        jump = abs(price / last_applied - 1)
        if jump > max_jump:
            return f"moved {jump:.2%} from the applied {last_applied} (bound {max_jump:.2%}) without confirmation"
    return None
