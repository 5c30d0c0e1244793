import pytest

from shared.stack.market_driver import Market
from tests.support.relay import start_isolated_relay


@pytest.fixture
def isolated_relay(stack, bus):
    """A relay of this test's own, on its own escrow contract (see tests/support/relay.py)."""
    started = []

    def start(**env_overrides):
        relay = start_isolated_relay(stack, bus, **env_overrides)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def market(stack, bus, owner_engine):
    """The local ETH/USD market, settled at 2000 before and after the test (see shared/stack/market_driver.py)."""
    m = Market(stack, bus.publish, owner_engine)
    m.settle_at("2000")
    yield m
    m.settle_at("2000")
