"""Fixtures over the real parts: one local stack (PostgreSQL, Pub/Sub emulator, anvil, functions)
per test session, in its own directory and ports, apart from the demo's.

`make test` runs pytest-xdist workers (three by default) (whole files each, `--dist loadfile`); each worker has a
stack of its own (.stack/test-gw0 on 19400, .stack/test-gw1 on 19500, …), so no test sees another's
data. Without xdist (the inner loop) the stack is .stack/test on 19400."""

from __future__ import annotations

import os

import pytest
import sqlalchemy

from shared.stack.layout import REPO_ROOT, StackLayout

# TEST_STACK_BASE_PORT moves the test stacks' ports (19400 and the next ~30 per worker), e.g. to run a
# second checkout's tests beside a running suite.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEST_LAYOUT = StackLayout(
    root=REPO_ROOT / ".stack" / (f"test-{_WORKER}" if _WORKER else "test"),
    base_port=int(os.environ.get("TEST_STACK_BASE_PORT", "19400")) + 100 * int(_WORKER.removeprefix("gw") or 0))

# The client library reads this itself; tests publish and pull on the test stack's emulator.
os.environ["PUBSUB_EMULATOR_HOST"] = TEST_LAYOUT.pubsub_host


# A scheduling hint for `make test` (xdist hands out whole files, in collection order): the longest
# files start first, so the short ones fill in at the end instead of one worker finishing a long file
# alone. Order only; every test still runs.
LONGEST_FIRST = ("tests/e2e/test_outages.py", "tests/integration/test_packages.py",
                 "tests/e2e/test_relay_operations.py", "tests/e2e/test_reconcile.py")


def pytest_collection_modifyitems(items):
    """Mark every test by the real parts it needs, from the fixtures it uses (directly or through
    another): `stack` (the whole local stack), else `db` (PostgreSQL alone); the rest are unit tests.
    `-m "not stack"` runs everything but the stack tests; `-m "not stack and not db"` needs no server."""
    for item in items:
        # schemathesis names each API operation's test `test_x[GET /escrows]` but leaves every one the
        # same node id, so xdist (which reports by node id) counted eight operations as one: give each
        # the id its name says.
        if item.nodeid.rpartition("::")[2] != item.name and item.parent is not None:
            from _pytest.nodeid import NodeId  # pytest 9's structured node id (pinned in requirements.lock)

            item._id = NodeId.parse(f"{item.parent.nodeid}::{item.name}")
        fixtures = getattr(item, "fixturenames", ())
        if "stack" in fixtures:
            item.add_marker(pytest.mark.stack)
        elif "database" in fixtures:
            item.add_marker(pytest.mark.db)

    def longest_first(item) -> int:
        file = item.nodeid.partition("::")[0]
        return LONGEST_FIRST.index(file) if file in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=longest_first)  # stable: files and tests otherwise keep their order


@pytest.fixture(scope="session")
def stack():
    """The running test stack; a missing prerequisite fails the session with an install hint.

    With KEEP_STACK=1 a stack left by an earlier run is reused and left running afterwards; only the
    functions whose code or settings changed since they started are restarted.
    """
    from shared.stack.stack import Stack

    test_stack = Stack(TEST_LAYOUT)
    keep = os.environ.get("KEEP_STACK") == "1"
    if keep:
        test_stack.stop_changed_functions()  # reuse the services, but serve the code as it is now
    test_stack.up()
    yield test_stack
    # KEEP_STACK=1 leaves the stack running for the next run (the inner loop); `up` reuses it.
    if not keep:
        test_stack.down()


@pytest.fixture(scope="session")
def database():
    """PostgreSQL with every migration applied, and nothing else: SQL, handlers and consumers are tested
    on it directly, without the emulator, anvil or running functions. Shares the stack's server (same
    layout), so a session with both starts it once; KEEP_STACK=1 leaves it running too."""
    from shared.stack.stack import Stack

    test_stack = Stack(TEST_LAYOUT)
    test_stack.start_database()
    yield TEST_LAYOUT
    if os.environ.get("KEEP_STACK") != "1":
        test_stack.down()


@pytest.fixture(scope="session")
def owner_engine(database):
    """A connection pool as the schema owner, for reading back what functions wrote (and, in db tests,
    for setting up what a handler reads)."""
    engine = sqlalchemy.create_engine(database.database_url(), pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture
def bus(stack):
    """The real Pub/Sub client on the emulator; deletes the subscriptions a test made."""
    from tests.support.pubsub import Bus

    test_bus = Bus()
    yield test_bus
    test_bus.close()
