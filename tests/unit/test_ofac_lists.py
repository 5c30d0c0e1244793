"""Parsing OFAC's legacy CSV files and the ETH address list (pure), on the real files."""

import pytest
from eth_utils import to_checksum_address

from shared.compliance.ofac import ADDRESS_LIST, ListFormatError, content_digest, parse_lists
from tests.support.compliance import OFAC_DATA, real_lists


def _files():
    names = {"sdn": "sdn.csv", "alt": "alt.csv", "add": "add.csv", "comments": "sdn_comments.csv",
             ADDRESS_LIST: "sanctioned_addresses_ETH.txt"}
    return {key: (OFAC_DATA / name).read_bytes() for key, name in names.items()}


def test_the_real_snapshot_parses_completely():
    lists = real_lists()
    assert lists.counts == {"sdn": 8976, "alt": 11910, "add": 13837, "eth_addresses": 152}
    first = lists.entries[0]
    assert (first["ent_num"], first["name"], first["sdn_type"], first["programs"]) == (
        36, "AEROCARIBBEAN AIRLINES", None, "CUBA")


def test_remarks_continue_in_the_comments_file_and_their_eth_addresses_are_found():
    lists = real_lists()
    # Entry 29703's "Digital Currency Address - ETH" is split across SDN.CSV and SDN_COMMENTS.CSV.
    entry = next(e for e in lists.entries if e["ent_num"] == 29703)
    assert "Digital Currency Address - ETH 0x8576acc5c05d6ce88f4e49bf65bdf0c62f91353c" in entry["remarks"]
    assert lists.wallets[to_checksum_address("0x8576acc5c05d6ce88f4e49bf65bdf0c62f91353c")] == 29703


def test_every_listed_address_is_checksummed():
    assert all(address == to_checksum_address(address) for address in real_lists().wallets)


def test_the_digest_depends_on_every_byte():
    files = _files()
    changed = {**files, ADDRESS_LIST: files[ADDRESS_LIST] + b"\n0x" + b"ab" * 20}
    assert content_digest(files) == content_digest(dict(files))
    assert content_digest(files) != content_digest(changed)


@pytest.mark.parametrize("key, content, message", [
    ("sdn", b"", "no entries"),
    ("sdn", b'36,"AEROCARIBBEAN AIRLINES",-0-\n', "expected 12 columns"),
    ("alt", b"not,a,valid,file\n", "expected 5 columns"),
    (ADDRESS_LIST, b"0x1234\n", "not an Ethereum address"),
])
def test_a_malformed_file_is_refused_whole(key, content, message):
    with pytest.raises(ListFormatError, match=message):
        parse_lists({**_files(), key: content})


def test_a_missing_file_is_named():
    files = _files()
    del files["add"]
    with pytest.raises(ListFormatError, match="ADD.CSV"):
        parse_lists(files)
