"""The one-word ABI decoder relay and fetch-price use instead of web3: checked against eth_abi's encoder,
and a table of malformed words, topics and data that must be refused rather than misread."""

import random

import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from shared.chain.abi import AbiMismatch, EventLayout, decode_words, event_layouts, load_artifact, selector
from shared.chain.escrow_logs import escrow_events, log_payload

TYPES = ["uint8", "uint64", "uint80", "uint256", "int256", "int24", "address", "bool"]


def _random_value(abi_type: str, rng: random.Random):
    if abi_type == "address":
        return "0x" + rng.randbytes(20).hex()
    if abi_type == "bool":
        return rng.random() < 0.5
    bits = int(abi_type.lstrip("uint") or 256)
    if abi_type.startswith("int"):
        low, high = -(1 << (bits - 1)), 1 << (bits - 1)
        return rng.choice([low, high - 1, -1, 0, rng.randrange(low, high)])
    return rng.choice([0, (1 << bits) - 1, rng.randrange(1 << bits)])


def test_decoding_matches_eth_abi_encoding_at_the_edges_of_every_type():
    rng = random.Random(7)
    for _ in range(300):
        types = [rng.choice(TYPES) for _ in range(rng.randint(1, 7))]
        values = [_random_value(t, rng) for t in types]
        assert decode_words("0x" + encode(types, values).hex(), types) == values


def test_the_escrow_topics_are_the_keccak_of_their_signatures():
    layouts = event_layouts(load_artifact("Escrow")["abi"])
    created = keccak(b"EscrowCreated(uint256,address,address,address,uint256,uint256,uint64)")
    assert layouts["0x" + created.hex()].name == "EscrowCreated"
    assert {layout.name for layout, _type, _build in escrow_events().values()} == {
        "EscrowCreated", "EscrowApproved", "EscrowCompleted", "EscrowRefunded"}
    assert selector("latestRoundData()") == "feaf968c"  # Chainlink's AggregatorV3Interface


def _word(value: int) -> str:
    return f"{value:064x}"


CREATED = next(layout for layout, _t, _b in escrow_events().values() if layout.name == "EscrowCreated")
GOOD_TOPICS = [CREATED.topic, "0x" + _word(5), "0x" + _word(0xAA), "0x" + _word(0xBB)]
GOOD_DATA = "0x" + _word(0xCC) + _word(10**18) + _word(123_00000000) + _word(1_900_000_000)


def test_a_well_formed_escrow_created_log_decodes_to_its_payload():
    raw = {"address": "0x" + "12" * 20, "blockNumber": "0x10", "blockHash": "0x" + "ab" * 32,
           "transactionHash": "0x" + "CD" * 32, "logIndex": "0x2", "topics": GOOD_TOPICS, "data": GOOD_DATA}
    payload = log_payload(31337, raw, CREATED, escrow_events()[CREATED.topic][2])
    assert payload["escrow_id"] == "5" and payload["amount"] == str(10**18)
    assert payload["obligation_usd"] == "123.00000000" and payload["deadline"] == 1_900_000_000
    assert payload["block_number"] == 16 and payload["log_index"] == 2 and payload["tx_hash"] == "0x" + "cd" * 32
    assert payload["depositor"].lower() == "0x" + "00" * 19 + "aa"


@pytest.mark.parametrize("topics, data, why", [
    (GOOD_TOPICS[:3], GOOD_DATA, "an indexed field missing"),
    (GOOD_TOPICS + ["0x" + _word(1)], GOOD_DATA, "an extra topic"),
    (GOOD_TOPICS, GOOD_DATA[:-64], "a data word missing"),
    (GOOD_TOPICS, GOOD_DATA + _word(1), "an extra data word"),
    (GOOD_TOPICS, GOOD_DATA[:-1], "odd hex"),
    (GOOD_TOPICS, GOOD_DATA[2:], "no 0x"),
    (GOOD_TOPICS, "0x" + "zz" * 128, "not hex"),
    (GOOD_TOPICS[:1] + ["0x" + "ff" * 32] + GOOD_TOPICS[2:], GOOD_DATA, None),  # uint256 max: a valid id
    (GOOD_TOPICS[:2] + ["0x" + "01" + "00" * 11 + "aa" * 20] + GOOD_TOPICS[3:], GOOD_DATA, "address padding"),
    (GOOD_TOPICS[:2] + ["0x" + _word(0xAA)[2:]] + GOOD_TOPICS[3:], GOOD_DATA, "a short topic"),
    (GOOD_TOPICS, GOOD_DATA[:-64] + _word(1 << 64), "a deadline past uint64"),
])
def test_malformed_logs_are_refused_not_misread(topics, data, why):
    if why is None:
        assert CREATED.decode(topics, data)["escrowId"] == (1 << 256) - 1
        return
    with pytest.raises(AbiMismatch):
        CREATED.decode(topics, data)


@pytest.mark.parametrize("abi_type", ["string", "bytes", "uint7", "uint264", "int0", "address[]", "tuple"])
def test_a_layout_with_a_type_the_decoder_cannot_read_is_refused_when_built(abi_type):
    entry = {"type": "event", "name": "E", "inputs": [{"name": "x", "type": abi_type, "indexed": False}]}
    with pytest.raises(AbiMismatch):
        EventLayout.from_abi(entry)


def test_signed_words_keep_their_sign_and_bounds():
    assert decode_words("0x" + "ff" * 32, ["int256"]) == [-1]
    with pytest.raises(AbiMismatch):
        decode_words("0x" + "00" * 31 + "80", ["int8"])  # 128 does not fit int8, though it fits the word
    assert decode_words("0x" + "ff" * 32, ["int8"]) == [-1]
