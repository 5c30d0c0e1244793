import pytest

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
