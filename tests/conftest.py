"""Fixtures over the real parts: one local stack (PostgreSQL, Pub/Sub emulator, anvil, functions)
per test session, in its own directory and ports, apart from the demo's."""

from __future__ import annotations

import os

import pytest
import sqlalchemy

from shared.stack.layout import REPO_ROOT, StackLayout

TEST_LAYOUT = StackLayout(root=REPO_ROOT / ".stack" / "test", base_port=19400)

# The client library reads this itself; tests publish and pull on the test stack's emulator.
os.environ["PUBSUB_EMULATOR_HOST"] = TEST_LAYOUT.pubsub_host


def pytest_collection_modifyitems(items):
    """Mark every test that needs the local stack (it uses the `stack` fixture, directly or through
    another), so `-m "not stack"` runs everything else in seconds."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack():
    """The running test stack; a missing prerequisite fails the session with an install hint.

    With KEEP_STACK=1 a stack left by an earlier run is reused and left running afterwards.
    """
    from shared.stack.stack import Stack

    test_stack = Stack(TEST_LAYOUT)
    keep = os.environ.get("KEEP_STACK") == "1"
    if keep:
        test_stack.stop_functions()  # reuse the services, but serve the code as it is now
    test_stack.up()
    yield test_stack
    # KEEP_STACK=1 leaves the stack running for the next run (the inner loop); `up` reuses it.
    if not keep:
        test_stack.down()


@pytest.fixture(scope="session")
def owner_engine(stack):
    """A connection pool as the schema owner, for reading back what functions wrote."""
    engine = sqlalchemy.create_engine(stack.layout.database_url(), pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture
def bus(stack):
    """The real Pub/Sub client on the emulator; deletes the subscriptions a test made."""
    from tests.support.pubsub import Bus

    test_bus = Bus()
    yield test_bus
    test_bus.close()
