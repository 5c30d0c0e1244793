"""shared/keccak.py against eth-hash (what eth-utils and web3 hash with), and the known empty-input digest."""

import random

from eth_hash.auto import keccak as eth_hash_keccak

from shared.keccak import keccak


def test_keccak_is_ethereums_keccak_256_not_sha3_256():
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak(b"transfer(address,uint256)")[:4].hex() == "a9059cbb"


def test_keccak_agrees_with_eth_hash_on_random_inputs_of_every_length_around_the_block_size():
    rng = random.Random(7)
    for length in [*range(0, 300), 1000, 4096]:
        data = rng.randbytes(length)
        assert keccak(data) == eth_hash_keccak(data), length
