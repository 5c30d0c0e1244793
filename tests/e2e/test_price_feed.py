"""fetch-price through the emulator: guards, provenance, retries, the TTL cache; read back from Postgres."""

import time
from decimal import Decimal

import requests

from shared.stack import services
from tests.support.pubsub import envelopes
from tests.support.relay import free_port


def _published(bus, subscription, event_id=None, settle=0.0, timeout=20.0) -> list[dict]:
    found = envelopes(bus.pull(subscription, until=lambda ms: bool(ms), timeout=timeout, settle=settle))
    return [e for e in found if event_id is None or e["event_id"] == event_id]


def test_both_sources_agree_and_the_median_is_published_with_provenance(market, bus):
    prices = bus.pull_subscription("market.prices.v1")
    market.quote("2100", chainlink="2110")
    decision = market.tick()
    assert decision.status == "accepted"
    assert decision.price == Decimal("2105")
    observed = market.observations(decision.fetch_id)
    assert observed["coingecko"].price == Decimal("2100") and observed["coingecko"].status == "fresh"
    assert observed["chainlink"].price == Decimal("2110") and observed["chainlink"].status == "fresh"
    [event] = _published(bus, prices, decision.published_event_id)
    assert event["event_type"] == "PriceUpdated"
    assert Decimal(event["payload"]["price"]) == Decimal("2105")
    sources = {s["source"]: s for s in event["payload"]["sources"]}
    assert set(sources) == {"coingecko", "chainlink"}
    assert int(sources["chainlink"]["round_id"]) == int(observed["chainlink"].round_id)
    assert Decimal(sources["coingecko"]["price"]) == Decimal("2100")


def test_a_stale_chainlink_round_is_not_used(market, bus):
    prices = bus.pull_subscription("market.prices.v1")
    market.quote("2050", chainlink="1500", chainlink_updated_at=int(time.time()) - 7200)  # heartbeat is 3600 s
    decision = market.tick()
    observed = market.observations(decision.fetch_id)
    assert observed["chainlink"].status == "stale"
    assert decision.status == "accepted" and decision.price == Decimal("2050")
    [event] = _published(bus, prices, decision.published_event_id)
    assert [s["source"] for s in event["payload"]["sources"]] == ["coingecko"]


def test_disagreeing_sources_are_recorded_not_published(market, bus):
    prices = bus.pull_subscription("market.prices.v1")
    market.quote("2000", chainlink="2300")
    decision = market.tick()
    assert decision.status == "suspect"
    assert "disagree" in decision.reason
    assert decision.published_event_id is None
    observed = market.observations(decision.fetch_id)
    assert observed["chainlink"].price == Decimal("2300") and observed["coingecko"].price == Decimal("2000")
    assert _published(bus, prices, timeout=4.0) == []


def test_a_jump_is_held_until_the_next_round_confirms_it(market, bus):
    prices = bus.pull_subscription("market.prices.v1")
    market.quote("3500")
    held = market.tick()
    assert held.status == "held" and held.published_event_id is None
    confirmed = market.tick()
    assert confirmed.status == "accepted" and "confirmed" in confirmed.reason
    events = _published(bus, prices, settle=2.0)
    assert [e["event_id"] for e in events] == [confirmed.published_event_id]
    assert Decimal(events[0]["payload"]["price"]) == Decimal("3500")
    assert events[0]["payload"]["jump_confirmed"] is True  # so assess-margin applies the jump
    market.wait_risk_caught_up()


def test_an_unmoved_price_is_not_published_again(market, bus):
    prices = bus.pull_subscription("market.prices.v1")
    market.quote("2004")  # 0.2%: inside the 0.5% deviation threshold, heartbeat not due
    decision = market.tick()
    assert decision.status == "accepted" and decision.published_event_id is None
    assert "within the threshold" in decision.reason
    assert _published(bus, prices, timeout=4.0) == []


def test_rate_limited_coingecko_is_retried_after_retry_after(market, stack):
    seen_before = len(stack.coingecko().requests_seen())
    market.quote("2060")
    stack.coingecko().fail_next(429, 2, retry_after=1)
    decision = market.tick()
    assert decision.status == "accepted" and decision.price == Decimal("2060")
    requests = stack.coingecko().requests_seen()[seen_before:]
    assert [r["status"] for r in requests] == [429, 429, 200]
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(requests, requests[1:], strict=False)]
    assert all(gap >= 1.0 for gap in gaps), gaps


def test_a_coingecko_outage_longer_than_one_call_redelivers_the_tick(market, stack):
    seen_before = len(stack.coingecko().requests_seen())
    market.quote("2070")
    # Three attempts per delivery: the first delivery fails and raises; Pub/Sub redelivers the tick.
    stack.coingecko().fail_next(500, 4)
    decision = market.tick(timeout=60)
    assert decision.status == "accepted" and decision.price == Decimal("2070")
    statuses = [r["status"] for r in stack.coingecko().requests_seen()[seen_before:]]
    assert statuses == [500, 500, 500, 500, 200]


def _extra_fetch_price(stack, instance: str, **env_overrides: str) -> tuple[int, int]:
    """Another fetch-price instance on a port of its own, with some settings changed: (pid, port)."""
    port = free_port()
    pid = stack.start_function(stack.topology.function("fetch-price"), None,
                               stack.layout.read_state()["escrow_address"], port=port, instance=instance,
                               env_overrides=env_overrides)
    return pid, port


def _push_tick(port: int, message_id: str) -> requests.Response:
    """A prices.tick pushed straight to one instance, as Pub/Sub pushes it."""
    tick = {"message": {"data": "e30=", "messageId": message_id, "publishTime": "2026-01-01T00:00:00Z"},
            "subscription": "projects/local-escrow/subscriptions/direct"}
    return requests.post(f"http://127.0.0.1:{port}/", json=tick, timeout=60, headers={
        "ce-id": message_id, "ce-source": "//pubsub.googleapis.com/", "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished"})


def test_a_price_fetched_within_its_ttl_is_not_fetched_again(market, stack):
    pid, port = _extra_fetch_price(stack, "fetch-price-ttl", PRICE_CACHE_TTL_SECONDS="300")
    try:
        market.tick()  # the stack's instance (TTL 0) fetches now
        seen = len(stack.coingecko().requests_seen())
        decisions = market.last_decision_id()
        reply = _push_tick(port, "ttl-test")
        assert reply.status_code == 200, reply.text
        assert len(stack.coingecko().requests_seen()) == seen
        assert market.last_decision_id() == decisions
    finally:
        services.stop(pid)


def test_a_price_committed_but_not_published_goes_out_with_the_next_tick(market, stack, bus):
    prices = bus.pull_subscription("market.prices.v1")
    # An instance whose publisher points at a closed port: the decision commits, the publish fails.
    pid, port = _extra_fetch_price(stack, "fetch-price-no-pubsub", PUBSUB_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
                                   PUBLISH_TIMEOUT_SECONDS="2")
    try:
        market.quote("2080")
        after = market.last_decision_id()
        reply = _push_tick(port, "publish-fails")
        assert reply.status_code == 500  # Pub/Sub would redeliver this tick
    finally:
        services.stop(pid)
    stranded = market.decision_after(after)
    assert stranded.status == "accepted" and stranded.published_event_id
    assert _published(bus, prices, timeout=3.0) == []
    # The stack's instance drains the outbox on its next tick, whatever it decides itself.
    market.tick()
    assert [e["event_id"] for e in _published(bus, prices, settle=2.0)] == [stranded.published_event_id]
