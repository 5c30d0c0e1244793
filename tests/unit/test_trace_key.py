"""The on-call trace reads an escrow's key as the api does: any valid spelling of the contract finds the
escrow by its primary key (checksummed, as settle keys it), and a bad key is refused with the format."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.ops.trace import parse_key

CHECKSUMMED = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize("contract", [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()])
def test_every_valid_spelling_of_the_contract_reads_as_the_checksummed_one(contract):
    assert parse_key(f"31337:{contract}:7") == (31337, CHECKSUMMED, Decimal(7))


@pytest.mark.parametrize("key", [
    "",
    "31337",
    f"31337:{CHECKSUMMED}",
    f"31337:{CHECKSUMMED}:7:8",
    f"chain:{CHECKSUMMED}:7",
    f"31337:{CHECKSUMMED}:seven",
    f"31337:{CHECKSUMMED}:1.5",
    f"31337:{CHECKSUMMED}:-1",
    f"31337:{CHECKSUMMED}:²",
    f"31337:{CHECKSUMMED}:{2**256}",
    "31337:0x5FBDB2315678afecb367f032d93F642f64180aa3:7",  # mixed case that fails its EIP-55 checksum
    "31337:0x1234:7",
])
def test_a_bad_key_is_refused_with_the_format_it_should_have(key):
    with pytest.raises(ValueError, match="chain_id:contract:escrow_id"):
        parse_key(key)
