"""EIP-55 addresses: the platform's own checksum against eth-utils, the reference implementation."""

import secrets

import pytest
from eth_utils import to_checksum_address

from shared.addresses import canonical_address, checksum_address, is_hex_address


def test_the_checksum_matches_the_reference_for_random_addresses():
    for _ in range(500):
        address = "0x" + secrets.token_hex(20)
        assert checksum_address(address) == to_checksum_address(address)


@pytest.mark.parametrize("spelling", [
    "0x5fbdb2315678afecb367f032d93f642f64180aa3",
    "0x5FBDB2315678AFECB367F032D93F642F64180AA3",
    "5fbdb2315678afecb367f032d93f642f64180aa3",
    "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "0X5FBDB2315678AFECB367F032D93F642F64180AA3",  # the whole string upper-cased
])
def test_every_eip55_valid_spelling_is_accepted_and_checksummed(spelling):
    assert canonical_address(spelling) == "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize("value, reason", [
    ("0x5fbdb2315678afecb367f032d93F642f64180aa3", "checksum"),  # mixed case, one letter wrong
    ("0X5fbdb2315678afecb367f032d93f642f64180aa3", "20-byte hex"),
    ("0x5fbdb2315678afecb367f032d93f642f64180aa", "20-byte hex"),
    ("0xzzbdb2315678afecb367f032d93f642f64180aa3", "20-byte hex"),
    (None, "20-byte hex"),
    (12345, "20-byte hex"),
])
def test_anything_else_is_refused(value, reason):
    with pytest.raises(ValueError, match=reason):
        canonical_address(value)
    assert not is_hex_address(value) or reason == "checksum"
