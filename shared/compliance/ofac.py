"""OFAC's sanctions files, parsed (pure): the legacy CSVs and a list of sanctioned Ethereum addresses.

OFAC publishes SDN.CSV, ALT.CSV, ADD.CSV and SDN_COMMENTS.CSV (their columns are in
`../shared/data/ofac/README.md`); `-0-` means empty, the files end with a DOS end-of-file byte, and
a Remarks field too long for SDN.CSV continues in SDN_COMMENTS.CSV. Ethereum addresses appear in the
remarks as `Digital Currency Address - ETH 0x…`; the optional address list adds the ones OFAC only
publishes in its XML. Every address is stored EIP-55 checksummed, so matching is exact.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.addresses import checksum_address, is_hex_address
from shared.errors import PermanentError
from shared.garbage_collection import collector_paused

# What each file is called where OFAC publishes it; the keys name them everywhere else.
OFAC_FILES = {"sdn": "SDN.CSV", "alt": "ALT.CSV", "add": "ADD.CSV", "comments": "SDN_COMMENTS.CSV"}
ADDRESS_LIST = "addresses"
_EMPTY = "-0-"
_ETH_IN_REMARKS = re.compile(r"Digital Currency Address - ETH\s+(0x[0-9a-fA-F]{40})")


class ListFormatError(PermanentError):
    """A sanctions file is not in the format OFAC documents; the snapshot is not loaded."""


@dataclass(frozen=True)
class ParsedLists:
    """One consistent set of files, ready to store as a snapshot."""

    digest: str
    entries: list[dict] = field(default_factory=list)
    aliases: list[dict] = field(default_factory=list)
    addresses: list[dict] = field(default_factory=list)
    # checksummed address -> the SDN entry whose remarks list it (None: only on the address list)
    wallets: dict[str, int | None] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {"sdn": len(self.entries), "alt": len(self.aliases), "add": len(self.addresses),
                "eth_addresses": len(self.wallets)}


def content_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over every file's name and bytes: the same files always give the same digest."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{len(files[name])}\0".encode())
        digest.update(files[name])
    return digest.hexdigest()


def _text(raw: bytes) -> str:
    # OFAC's files are ASCII in practice; Latin-1 never fails, so an odd byte cannot stop a load.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _rows(name: str, raw: bytes, columns: int) -> list[list[str | None]]:
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(_text(raw))), start=1):
        if not row or row == ["\x1a"] or all(not cell.strip() for cell in row):
            continue
        if len(row) != columns or not row[0].strip().isdigit():
            raise ListFormatError(f"{OFAC_FILES.get(name, name)} line {number}: expected {columns} columns "
                                  f"starting with an entity number, got {len(row)}")
        rows.append([None if cell.strip() in (_EMPTY, "") else cell.strip() for cell in row])
    return rows


def _int(value: str | None) -> int:
    return int(value) if value else 0


@collector_paused()
def parse_lists(files: Mapping[str, bytes]) -> ParsedLists:
    """Parse OFAC's four CSV files and the optional address list; ListFormatError if any is malformed."""
    missing = [OFAC_FILES[name] for name in OFAC_FILES if name not in files]
    if missing:
        raise ListFormatError(f"missing {', '.join(missing)}")
    continued: dict[int, str] = {}
    for number, more in _rows("comments", files["comments"], 2):
        continued[_int(number)] = continued.get(_int(number), "") + (more or "")
    entries = []
    wallets: dict[str, int | None] = {}
    for row in _rows("sdn", files["sdn"], 12):
        ent_num = _int(row[0])
        remarks = (row[11] or "") + continued.get(ent_num, "")
        if not row[1]:
            raise ListFormatError(f"SDN.CSV entry {ent_num} has no name")
        entries.append({"ent_num": ent_num, "name": row[1], "sdn_type": row[2], "programs": row[3],
                        "title": row[4], "remarks": remarks or None})
        for address in _ETH_IN_REMARKS.findall(remarks):
            wallets[checksum_address(address)] = ent_num
    if not entries:
        raise ListFormatError("SDN.CSV has no entries")
    aliases = [{"ent_num": _int(r[0]), "alt_num": _int(r[1]), "alt_type": r[2], "name": r[3], "remarks": r[4]}
               for r in _rows("alt", files["alt"], 5) if r[3]]
    addresses = [{"ent_num": _int(r[0]), "add_num": _int(r[1]), "address": r[2], "city": r[3], "country": r[4],
                  "remarks": r[5]} for r in _rows("add", files["add"], 6)]
    for line_number, line in enumerate(_text(files.get(ADDRESS_LIST, b"")).splitlines(), start=1):
        address = line.strip()
        if not address or address.startswith("#"):
            continue
        if not is_hex_address(address):
            raise ListFormatError(f"address list line {line_number}: {address!r} is not an Ethereum address")
        wallets.setdefault(checksum_address(address), None)
    return ParsedLists(digest=content_digest(files), entries=entries, aliases=aliases, addresses=addresses,
                       wallets=wallets)
