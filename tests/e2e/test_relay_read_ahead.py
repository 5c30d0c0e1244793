"""relay reads a large range in parts and stages each part while the next is read, all in the range's one
transaction. Driven in-process (`scan`) against the real database, anvil and the Pub/Sub emulator."""

import time

import pytest
import sqlalchemy

from shared.chain.client import deploy_contract, escrow_contract
from shared.db import connection
from shared.errors import RangeTooLarge
from shared.messaging import outbox
from shared.relay import service
from shared.relay.service import get_reader, scan
from shared.relay.settings import ChainSettings
from shared.relay.tables import SCHEMA
from shared.stack.chain_driver import create_escrow, mine
from shared.stack.layout import CHAIN_ID, PROJECT_ID

RANGE = 1000


class RefusingSecondPart:
    """The chain reader, except that the first range's second part is refused as too large, as a provider
    with a log-count limit refuses a dense stretch of blocks."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.calls: list[tuple[int, int]] = []

    def logs(self, start: int, end: int):
        self.calls.append((start, end))
        if len(self.calls) == 2:
            raise RangeTooLarge(f"eth_getLogs {start}..{end} refused: query returned more than 10000 results")
        return self.reader.logs(start, end)

    def __getattr__(self, name):
        return getattr(self.reader, name)


@pytest.fixture
def two_part_range(stack):
    """Escrows at both ends of a stretch of some 200 blocks: two parts of a range (READ_PART_MIN_BLOCKS)."""
    w3 = stack.web3()
    accounts = w3.eth.accounts
    address = deploy_contract(w3, "Escrow", accounts[0])
    contract = escrow_contract(w3, address)
    start = w3.eth.block_number + 1

    def create(count: int) -> None:
        for i in range(count):
            create_escrow(w3, contract, accounts[1], accounts[6], 10**15 + i, 10**9)

    create(3)
    mine(w3, 2 * service.READ_PART_MIN_BLOCKS)
    create(3)
    chain = ChainSettings(rpc_url=stack.layout.rpc_url, chain_id=CHAIN_ID, escrow_address=address, confirmations=0,
                          start_block=start, block_range=RANGE, time_budget_seconds=60)
    engine = sqlalchemy.create_engine(stack.layout.database_url("fn_relay"))
    yield chain, engine
    engine.dispose()


def test_a_part_refused_mid_range_keeps_nothing_of_the_range_and_the_smaller_range_relays_all(
        stack, bus, two_part_range):
    chain, engine = two_part_range
    reader = RefusingSecondPart(get_reader(chain.rpc_url, chain.escrow_address, chain.chain_id))
    published: list[str] = []

    def publish(staged):
        published.extend(s.message.attributes["event_id"] for s in staged)
        with connection(engine) as conn:
            return outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, staged)

    result = scan(engine, reader, chain, time.monotonic() + 60, publish, 30)

    first, second = reader.calls[:2]
    assert first[0] == chain.start_block and second[0] == first[1] + 1, "the range was read in parts"
    with engine.connect() as conn:
        relayed = conn.execute(sqlalchemy.text(
            "SELECT event_id FROM relay.relayed_logs WHERE contract = :c ORDER BY block_number, log_index"),
            {"c": chain.escrow_address.lower()}).scalars().all()
        staged = conn.execute(sqlalchemy.text(
            "SELECT o.event_id FROM relay.outbox o JOIN relay.relayed_logs r USING (dedupe_key) "
            "WHERE r.contract = :c AND o.published_at IS NOT NULL ORDER BY o.id"),
            {"c": chain.escrow_address.lower()}).scalars().all()
        range_size = conn.execute(sqlalchemy.text(
            "SELECT range_size FROM relay.checkpoints WHERE contract = :c"),
            {"c": chain.escrow_address.lower()}).scalar()
    # The first part's logs were not kept when the second was refused: had they been, the rescan would
    # have recognised them as relayed and never published them.
    assert len(relayed) == 6
    assert published == relayed, "each log published once, in chain order"
    assert staged == relayed
    assert (result.logs, result.published) == (6, 6)
    assert range_size < RANGE, "the refusal halved the range"
