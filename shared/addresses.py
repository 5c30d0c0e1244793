"""Ethereum addresses in their one stored spelling: EIP-55 checksummed (pure but for keccak).

`canonical_address` is for input from outside (messages, requests): any EIP-55-valid spelling is
accepted (checksummed, all lower or all upper case, with or without `0x`, the whole string upper-cased
"0X…" too), and mixed case with a wrong
checksum is refused. `checksum_address` is for addresses a trusted decoder produced (chain logs, OFAC
files), whose case means nothing.

Hand-written on shared/keccak.py rather than imported from eth-utils: the EIP-55 rule is a few lines,
and eth-utils (which loads pydantic and more) tripled the import time of every function's envelope.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from shared.keccak import keccak

# "0X" only as part of a whole string upper-cased (how some wallets and spreadsheets show addresses).
_HEX_ADDRESS = re.compile(r"(0x)?[0-9a-fA-F]{40}|0X[0-9A-F]{40}")


def is_hex_address(value: Any) -> bool:
    """A 20-byte hex string, with or without `0x`, in any letter case; or all upper case with `0X`."""
    return isinstance(value, str) and _HEX_ADDRESS.fullmatch(value) is not None


@functools.lru_cache(maxsize=65536)
def _checksummed(digits: str) -> str:
    """EIP-55 of 40 lower-case hex digits; cached, since the same parties and contracts recur."""
    hashed = keccak(digits.encode()).hex()[:40]
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, hashed, strict=True))


def _digits(address: str) -> str:
    """The 40 hex digits of an address that passed `is_hex_address`."""
    return address[-40:]


def checksum_address(value: Any) -> str:
    """The checksummed form of a hex address whose letter case carries no meaning; ValueError if not hex."""
    if not is_hex_address(value):
        raise ValueError("must be a 20-byte hex address")
    return _checksummed(_digits(value).lower())


def canonical_address(value: Any) -> str:
    """The checksummed form of an EIP-55-valid address; ValueError for anything else."""
    checksummed = checksum_address(value)
    digits = _digits(value)
    if digits not in (digits.lower(), digits.upper()) and "0x" + digits != checksummed:
        raise ValueError(f"{value} fails its EIP-55 checksum")
    return checksummed
