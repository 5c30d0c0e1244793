"""The price guards, decided on hand-made quotes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.assets import Asset
from shared.pricing.guards import (
    ACCEPTED,
    HELD,
    SUSPECT,
    UNAVAILABLE,
    AssetPriceState,
    decide,
    published_price_problem,
)
from shared.pricing.quotes import CHAINLINK, COINGECKO, Quote

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ETH = Asset(symbol="ETH", token="0x" + "00" * 20, decimals=18, coingecko_id="ethereum",
            chainlink_aggregator="0x" + "11" * 20, heartbeat_seconds=3600,
            deviation_threshold=Decimal("0.005"), liquidation_threshold=Decimal("0.825"))
SPREAD, JUMP = Decimal("0.02"), Decimal("0.5")


def quotes(coingecko="2000", chainlink="2000", chainlink_age=60, coingecko_age=30):
    return [
        Quote(COINGECKO, Decimal(coingecko) if coingecko else None, NOW - timedelta(seconds=coingecko_age)),
        Quote(CHAINLINK, Decimal(chainlink) if chainlink else None, NOW - timedelta(seconds=chainlink_age),
              round_id=7),
    ]


NOTHING_YET = AssetPriceState()


def run(qs, state=NOTHING_YET):
    return decide(ETH, qs, state, NOW, max_source_spread=SPREAD, max_jump=JUMP)


def published(price="2000", seconds_ago=60, good=None):
    return AssetPriceState(last_good_price=Decimal(good or price), last_published_price=Decimal(price),
                           last_published_at=NOW - timedelta(seconds=seconds_ago))


def test_the_first_price_is_the_median_and_is_published():
    decision = run(quotes("2000", "2010"))
    assert (decision.status, decision.price, decision.publish) == (ACCEPTED, Decimal("2005"), True)
    assert decision.reason == "first price"


def test_a_source_older_than_the_heartbeat_is_stale_and_left_out():
    decision = run(quotes("2000", "1500", chainlink_age=3601))
    assert decision.status == ACCEPTED and decision.price == Decimal("2000")
    assert [r.status for r in decision.readings] == ["fresh", "stale"]
    assert [r.quote.source for r in decision.fresh_readings] == [COINGECKO]


def test_no_fresh_source_is_unavailable_and_says_why():
    decision = run(quotes(None, "2000", chainlink_age=4000))
    assert decision.status == UNAVAILABLE and decision.price is None
    assert "coingecko: invalid" in decision.reason and "chainlink: stale" in decision.reason


def test_sources_apart_by_more_than_the_bound_are_suspect():
    assert run(quotes("2000", "2041")).status == SUSPECT  # 2.05%
    assert run(quotes("2000", "2040")).status == ACCEPTED  # exactly 2%


def test_a_jump_beyond_the_bound_is_held_then_confirmed_by_the_next_round():
    first = run(quotes("3100", "3100"), published("2000"))
    assert (first.status, first.publish) == (HELD, False)
    confirmed = run(quotes("3110", "3100"), AssetPriceState(
        last_good_price=Decimal(2000), held_price=first.price, last_published_price=Decimal(2000),
        last_published_at=NOW - timedelta(seconds=60)))
    assert (confirmed.status, confirmed.publish, confirmed.jump_confirmed) == (ACCEPTED, True, True)
    back = run(quotes("2001", "2001"), AssetPriceState(last_good_price=Decimal(2000), held_price=Decimal(3100)))
    assert (back.status, back.jump_confirmed) == (ACCEPTED, False)  # the jump did not persist


@pytest.mark.parametrize(("price", "seconds_ago", "publish"), [
    ("2010", 60, False),  # 0.5%: not beyond the deviation threshold
    ("2010.02", 60, True),  # just beyond it
    ("1989.98", 60, True),  # downwards too
    ("2000", 3599, False),
    ("2000", 3600, True),  # heartbeat elapsed
])
def test_publishing_follows_deviation_and_heartbeat(price, seconds_ago, publish):
    decision = run(quotes(price, price), published("2000", seconds_ago))
    assert decision.status == ACCEPTED and decision.publish is publish


@pytest.mark.parametrize("price, sources, confirmed, applied, problem", [
    ("2000", ["2000"], False, "1990", None),
    ("2000", ["1990", "2010"], False, None, None),  # the median of an even count is the mean of the middle two
    ("2000", [], False, None, "no source prices"),
    ("2000", ["1000"], False, None, "not the median"),
    ("4000", ["4000"], False, "2000", "without confirmation"),
    ("4000", ["4000"], True, "2000", None),  # fetch-price saw the jump confirmed by a second round
    ("1001", ["1001"], False, "2000", None),  # a move within PRICE_MAX_JUMP (0.5)
])
def test_a_published_price_applies_only_with_its_provenance_and_within_the_jump_bound(
        price, sources, confirmed, applied, problem):
    found = published_price_problem(Decimal(price), [Decimal(s) for s in sources], confirmed,
                                    Decimal(applied) if applied else None, Decimal("0.5"))
    assert (found is None) if problem is None else (problem in found)
