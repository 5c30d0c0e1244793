"""A tick that asks relay for a backfill: only a well-formed request for relay's own contract is taken."""

import json

import pytest

from shared.relay.service import backfill_request
from shared.relay.settings import ChainSettings

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = ChainSettings(rpc_url="http://127.0.0.1:8545", chain_id=31337, escrow_address=CONTRACT, confirmations=2,
                      start_block=10, block_range=500, time_budget_seconds=20)


def _tick(backfill) -> bytes:
    return json.dumps({"source": "reconcile", "backfill": backfill}).encode()


def test_a_request_for_this_contract_names_its_block():
    assert backfill_request(_tick({"contract": CONTRACT, "from_block": 42}), CHAIN) == 42
    assert backfill_request(_tick({"contract": CONTRACT.lower(), "from_block": 10}), CHAIN) == 10


@pytest.mark.parametrize("tick", [
    b"", b"{}", b'{"source": "scheduler"}', b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 30_000 + b"]" * 30_000,
    _tick(None), _tick("0x1"), _tick([CONTRACT, 42]),
    _tick({"contract": "0x" + "11" * 20, "from_block": 42}),   # another contract
    _tick({"contract": CONTRACT, "from_block": 9}),             # before the start block
    _tick({"contract": CONTRACT, "from_block": "42"}),          # a string
    _tick({"contract": CONTRACT, "from_block": 4.2}),
    _tick({"contract": CONTRACT, "from_block": True}),
    _tick({"contract": CONTRACT}),
    _tick({"contract": 7, "from_block": 42}),
])
def test_anything_else_is_a_plain_tick(tick):
    assert backfill_request(tick, CHAIN) is None
