"""Keccak-256 as Ethereum hashes (the original Keccak padding, not NIST SHA3-256's): address checksums,
event topics and function selectors.

From safe-pysha3's C extension, loaded in 3 ms. eth-hash's automatic backend (pycryptodome through cffi,
whose first use parses C declarations with pycparser) took 50 ms of whichever request first hashed, in
every function: the first checksummed address of settle's first event, relay's first log, a registration's
wallets, and the reconciler's start. A unit test checks it against eth-hash on random inputs.
"""

from __future__ import annotations

from sha3 import keccak_256


def keccak(data: bytes) -> bytes:
    """The 32-byte Keccak-256 digest of `data`."""
    return keccak_256(data).digest()
