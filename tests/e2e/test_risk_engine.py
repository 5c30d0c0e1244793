"""assess-margin through the emulator: escrows from settle, prices from fetch-price, tiers and portfolios."""

import json
import secrets
from decimal import Decimal

import pytest
import requests
import sqlalchemy

from shared.envelope import derive_event_id
from shared.events import MARGIN_TIER_CHANGED
from shared.stack.chain_driver import approve, complete, create_escrow, mine, new_funded_account, wait_for
from tests.support.openapi import assert_matches
from tests.support.pubsub import envelopes
from tests.support.risk import (
    applied_price,
    health,
    history,
    margin_events,
    portfolio,
    position,
    wait_position,
)

ETH = 10**18
USD = 10**8
LIQUIDATION_THRESHOLD = Decimal("0.825")


@pytest.fixture
def chain(stack, owner_engine, isolated_relay):
    """Create escrows on a contract of this test's own and wait until risk has them."""
    relay = isolated_relay()
    w3 = stack.web3()

    class Chain:
        contract = relay.contract
        accounts = w3.eth.accounts

        def create(self, amount_wei, obligation_usd, depositor=None):
            escrow = create_escrow(w3, relay.contract, depositor or w3.eth.accounts[1], w3.eth.accounts[2],
                                   amount_wei, obligation_usd * USD)
            self.sync()
            wait_position(owner_engine, relay.contract.address, escrow.escrow_id, "created")
            return escrow

        def sync(self):
            mine(w3, 2)
            relay.wait_caught_up(owner_engine)

        def approve(self, escrow):
            approve(w3, relay.contract, escrow)

        def complete(self, escrow):
            complete(w3, relay.contract, escrow)

    return Chain()


def _ours(messages, contract, escrow_id):
    return [e for e in envelopes(messages)
            if e["payload"]["contract"] == contract and int(e["payload"]["escrow_id"]) == escrow_id]


def test_a_price_crash_turns_into_a_margin_call(market, chain, bus, owner_engine):
    margin_sub = bus.pull_subscription("risk.margin-events.v1")
    prices_sub = bus.pull_subscription("market.prices.v1")
    escrow = chain.create(ETH, 1000)  # health factor at 2000: 2000 x 0.825 / 1000 = 1.65, HEALTHY
    contract = chain.contract.address
    assert history(owner_engine, contract, escrow.escrow_id)[-1].tier == "HEALTHY"

    market.quote("1400", chainlink="1401")
    decision = market.tick()
    [price] = [e for e in envelopes(bus.pull(prices_sub, until=bool)) if e["event_id"] == decision.published_event_id]
    assert Decimal(price["payload"]["price"]) == Decimal("1400.5")

    events = wait_for(lambda: _ours(bus.pull(margin_sub, until=bool, timeout=5), contract, escrow.escrow_id),
                      "the margin event", timeout=30)
    [event] = events
    expected_hf = (Decimal("1400.5") * LIQUIDATION_THRESHOLD / 1000).quantize(Decimal("1e-8"))
    assert event["payload"]["previous_tier"] == "HEALTHY" and event["payload"]["tier"] == "MARGIN_CALL"
    assert Decimal(event["payload"]["health_factor"]) == expected_hf
    assert event["payload"]["price_event_id"] == price["event_id"]
    assert event["payload"]["depositor"] == escrow.depositor
    # The escrow's correlation id (its creation log's) rides along; the id is derived from the price event.
    created = position(owner_engine, contract, escrow.escrow_id)
    assert event["correlation_id"] == created.correlation_id and created.correlation_id.startswith("31337:0x")
    assert event["event_id"] == derive_event_id(price["event_id"], MARGIN_TIER_CHANGED,
                                                f"31337:{contract}:{escrow.escrow_id}")
    # The price pass recorded the change once: as the margin event, with no snapshot of the same facts.
    record = history(owner_engine, contract, escrow.escrow_id)[-1]
    assert (record.margin_event_id, record.snapshot_id) == (event["event_id"], None)
    assert event["payload"]["snapshot_id"] is None
    assert (record.tier, record.health_factor, record.price) == ("MARGIN_CALL", expected_hf, Decimal("1400.5"))
    provenance = {s["source"]: s for s in applied_price(owner_engine, record.price_event_id).provenance["sources"]}
    assert set(provenance) == {"coingecko", "chainlink"} and provenance["chainlink"]["round_id"]
    assert all("age_seconds" in s for s in provenance.values())


def test_a_price_wobbling_around_a_threshold_emits_one_event(market, chain, owner_engine):
    # 1 ETH against 1100 USD: the health factor is price x 0.825 / 1100, exactly 1.5 (WARNING's bound) at 2000.
    escrow = chain.create(ETH, 1100)
    contract = chain.contract.address
    # Each step moves more than the 0.5% deviation threshold, so each is published and applied.
    for price in ("1980", "2020", "1980", "2020", "1980", "2020"):
        market.settle_at(price)
    assert [(e.previous_tier, e.tier) for e in margin_events(owner_engine, contract, escrow.escrow_id)] == [
        ("HEALTHY", "WARNING")]
    assert history(owner_engine, contract, escrow.escrow_id)[-1].tier == "WARNING"
    now = health(owner_engine, contract, escrow.escrow_id)
    assert (now.health_factor, now.tier) == (Decimal("1.515"), "WARNING")  # 1.515 < 1.5 + 0.05
    market.settle_at("2100")  # 1.575: clearly back above
    assert [(e.previous_tier, e.tier) for e in margin_events(owner_engine, contract, escrow.escrow_id)] == [
        ("HEALTHY", "WARNING"), ("WARNING", "HEALTHY")]


def test_escrow_changes_reach_the_projection_and_a_completed_escrow_leaves_the_risk_set(market, chain, owner_engine):
    escrow = chain.create(2 * ETH, 1000)
    contract = chain.contract.address
    chain.approve(escrow)
    chain.sync()
    assert wait_position(owner_engine, contract, escrow.escrow_id, "approved").is_open
    chain.complete(escrow)
    chain.sync()
    closed = wait_position(owner_engine, contract, escrow.escrow_id, "completed")
    assert not closed.is_open
    assert health(owner_engine, contract, escrow.escrow_id) is None
    assessed = len(history(owner_engine, contract, escrow.escrow_id))
    market.settle_at("1900")
    assert len(history(owner_engine, contract, escrow.escrow_id)) == assessed
    assert health(owner_engine, contract, escrow.escrow_id) is None


def test_duplicate_and_stale_price_messages_change_nothing(market, bus, owner_engine, chain):
    escrow = chain.create(ETH, 1000)
    contract = chain.contract.address
    prices_sub = bus.pull_subscription("market.prices.v1")
    market.settle_at("1950")
    [latest] = envelopes(bus.pull(prices_sub, until=bool))
    before = len(history(owner_engine, contract, escrow.escrow_id))
    # The same message again, and an older price under a new id: neither may be applied.
    bus.publish("market.prices.v1", _body(latest))
    older = {**latest, "event_id": latest["event_id"] + ":replayed",
             "payload": {**latest["payload"], "sequence": latest["payload"]["sequence"] - 1, "price": "10"}}
    bus.publish("market.prices.v1", _body(older))
    wait_for(lambda: _inbox_has(owner_engine, older["event_id"]), "assess-margin to take the older price")
    assert len(history(owner_engine, contract, escrow.escrow_id)) == before
    with owner_engine.connect() as conn:
        current = conn.execute(sqlalchemy.text("SELECT price, price_event_id FROM risk.asset_prices")).one()
    assert (current.price, current.price_event_id) == (Decimal(latest["payload"]["price"]), latest["event_id"])


def test_portfolio_matches_a_hand_computation(market, chain, stack, owner_engine):
    first, second = new_funded_account(stack.web3()), new_funded_account(stack.web3())
    terms = {first: [(2 * ETH, 1500), (ETH // 2, 300), (3 * ETH, 4000)], second: [(4 * ETH, 5000)]}
    escrows = {wallet: [chain.create(amount, owed, depositor=wallet) for amount, owed in wallet_terms]
               for wallet, wallet_terms in terms.items()}
    closed = escrows[first][2]
    chain.approve(closed)
    chain.complete(closed)  # closed: leaves the portfolio
    chain.sync()
    wait_position(owner_engine, chain.contract.address, closed.escrow_id, "completed")
    market.settle_at("1800")

    # By hand, at 1800 USD/ETH with a 0.825 liquidation threshold:
    #   first:  value 2 x 1800 + 0.5 x 1800 = 4500, adjusted 3712.5, owed 1500 + 300 = 1800, hf 2.0625
    #   second: value 4 x 1800 = 7200, adjusted 5940, owed 5000, hf 1.188 -> MARGIN_CALL
    #   total:  adjusted 9652.5 / owed 6800 = 1.41948529...
    stored = portfolio(owner_engine, first)
    assert (stored.open_positions, stored.unpriced_positions) == (2, 0)
    assert stored.collateral_value_usd == Decimal(4500)
    assert stored.risk_adjusted_collateral_usd == Decimal("3712.5")
    assert stored.obligation_usd == Decimal(1800)
    assert stored.health_factor == Decimal("2.0625")
    assert stored.worst_tier == "HEALTHY"
    assert portfolio(owner_engine, second).worst_tier == "MARGIN_CALL"

    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    user = requests.post(f"{api}/users", timeout=10, json={
        "name": "Ada Lovelace", "date_of_birth": "1990-12-10", "country": "GB",
        "email": f"ada-{secrets.token_hex(4)}@example.org", "phone": "+442079460000",
        "wallet_addresses": [first.lower(), second], "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": "GB1234567", "issuing_country": "GB",
                              "expires_on": "2031-01-31"}}).json()
    reply = requests.get(f"{api}/users/{user['user_id']}/portfolio", timeout=10)
    assert_matches("/users/{user_id}/portfolio", "get", reply)
    body = reply.json()
    assert {w["wallet"]: w["health_factor"] for w in body["wallets"]} == {first: "2.06250000", second: "1.18800000"}
    assert body["total"]["open_positions"] == 3
    assert Decimal(body["total"]["risk_adjusted_collateral_usd"]) == Decimal("9652.5")
    assert Decimal(body["total"]["obligation_usd"]) == Decimal(6800)
    assert body["total"]["health_factor"] == str((Decimal("9652.5") / 6800).quantize(Decimal("1e-8")))
    assert body["total"]["worst_tier"] == "MARGIN_CALL"


def _body(document):
    return json.dumps(document).encode()


def _inbox_has(engine, event_id):
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT 1 FROM risk.inbox WHERE event_id = :e"), {"e": event_id}).first()
