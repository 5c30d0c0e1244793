"""relay reads a large range in parts and stages each part while the next is read, all in the range's one
transaction. Driven in-process (`scan`) against the real database, anvil and the Pub/Sub emulator."""

import time

import pytest

from shared.chain.client import deploy_contract, escrow_contract
from shared.db import connection, sql
from shared.messaging import outbox
from shared.relay import SCHEMA, service
from shared.relay.service import get_reader, scan
from shared.relay.settings import ChainSettings
from shared.stack.chain_driver import create_escrow, reorg
from shared.stack.layout import CHAIN_ID, PROJECT_ID
from tests.support.database import engine_as
from tests.support.rpc_proxy import LimitingRpcProxy

RANGE = 1000


class ReorganisingAfterFirstPart:
    """The chain reader, except that the whole range is replaced by empty blocks (a reorganisation) once
    its first part has been read."""

    def __init__(self, reader, w3, start: int) -> None:
        self.reader, self.w3, self.start = reader, w3, start
        self.calls: list[tuple[int, int]] = []

    def logs(self, start: int, end: int):
        self.calls.append((start, end))
        if len(self.calls) == 2:
            reorg(self.w3, self.w3.eth.block_number - self.start + 1)
        return self.reader.logs(start, end)

    def __getattr__(self, name):
        return getattr(self.reader, name)


def _scan_published(chain, engine, reader) -> tuple:
    published: list[str] = []

    def publish(staged):
        published.extend(s.message.attributes["event_id"] for s in staged)
        with connection(engine) as conn:
            return outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, staged)

    return scan(engine, reader, chain, time.monotonic() + 60, publish, 30), published


def _relayed(engine, chain) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sql(
            "SELECT event_id FROM relay.relayed_logs WHERE contract = :c ORDER BY block_number, log_index"),
            {"c": chain.escrow_address.lower()}).scalars().all()


@pytest.fixture
def two_part_range(stack, monkeypatch):
    """Four escrows, one a block, read as two parts of two blocks (READ_PART_MIN_BLOCKS made 2, so that a
    reorganisation of the range stays as shallow as the other reorg tests' on the shared chain)."""
    monkeypatch.setattr(service, "READ_PART_MIN_BLOCKS", 2)
    w3 = stack.web3()
    accounts = w3.eth.accounts
    address = deploy_contract(w3, "Escrow", accounts[0])
    contract = escrow_contract(w3, address)
    start = w3.eth.block_number + 1
    blocks = [create_escrow(w3, contract, accounts[1], accounts[6], 10**15 + i, 10**9).block_number
              for i in range(4)]
    assert blocks == list(range(start, start + 4)), "one escrow a block, from the range's start"
    chain = ChainSettings(rpc_url=stack.layout.rpc_url, chain_id=CHAIN_ID, escrow_address=address, confirmations=0,
                          start_block=start, block_range=RANGE, time_budget_seconds=60)
    with engine_as(stack.layout, "fn_relay") as engine:
        yield chain, engine


def test_a_part_refused_mid_range_keeps_nothing_of_the_range_and_the_smaller_range_relays_all(
        stack, bus, two_part_range):
    chain, engine = two_part_range
    with LimitingRpcProxy(stack.layout.rpc_url, max_blocks=10_000) as provider:
        # The second part is refused (any part but the first starts after the range's first block), as a
        # provider refuses a dense stretch of blocks.
        provider.refuse_once_from_block = chain.start_block + 1
        reader = get_reader(provider.url, chain.escrow_address, chain.chain_id)
        result, published = _scan_published(chain, engine, reader)

    assert provider.refused == 1
    first, second = provider.served_ranges[:2]
    # Refused once, and only a part after the first can be: the first part was read before the refusal.
    assert first[0] == chain.start_block, "the first part, read before the refusal"
    assert second == first, "then the range again, from its start"
    relayed = _relayed(engine, chain)
    with engine.connect() as conn:
        staged = conn.execute(sql(
            "SELECT o.event_id FROM relay.outbox o JOIN relay.relayed_logs r USING (dedupe_key) "
            "WHERE r.contract = :c AND o.published_at IS NOT NULL ORDER BY o.id"),
            {"c": chain.escrow_address.lower()}).scalars().all()
        range_size = conn.execute(sql(
            "SELECT range_size FROM relay.checkpoints WHERE contract = :c"),
            {"c": chain.escrow_address.lower()}).scalar()
    # The first part's logs were not kept when the second was refused: had they been, the rescan would
    # have recognised them as relayed and never published them.
    assert len(relayed) == 4
    assert published == relayed, "each log published once, in chain order"
    assert staged == relayed
    assert (result.logs, result.published) == (4, 4)
    assert range_size < RANGE, "the refusal halved the range"


def test_a_reorganisation_while_a_range_is_read_keeps_nothing_of_the_abandoned_fork(
        stack, bus, two_part_range, caplog):
    chain, engine = two_part_range
    reader = ReorganisingAfterFirstPart(get_reader(chain.rpc_url, chain.escrow_address, chain.chain_id),
                                        stack.web3(), chain.start_block)
    result, published = _scan_published(chain, engine, reader)
    # The first part (two escrows, since replaced by empty blocks) was read before the reorganisation:
    # kept, its logs would stay relayed with a checkpoint on the new fork, never compensated.
    assert len(reader.calls) > 2, "the range was read again"
    assert _relayed(engine, chain) == []
    assert published == [] and (result.logs, result.published) == (0, 0)
    assert "the chain reorganised while the range was read; reading it again" in caplog.text
