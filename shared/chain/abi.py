"""The project's compiled contracts, and decoding of their one-word ABI values (pure but for keccak).

Every value the platform reads from a contract (the escrow's event fields, a Chainlink round) is a
static type that fills exactly one 32-byte word: `uintN`, `intN`, `address`, `bool`. Decoding those is
slicing and range checks, so relay and fetch-price need neither web3.py nor eth_abi (whose import
loads pydantic). A layout with any other type is refused when it is built, so a contract change that
adds a dynamic field fails loudly rather than decoding garbage.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.keccak import keccak

ARTIFACTS_DIR = Path(__file__).with_name("artifacts")
WORD = 32


class AbiMismatch(ValueError):
    """Data that does not have the layout its ABI says."""


@functools.cache
def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact (abi, bytecode) of a project contract."""
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())


def selector(signature: str) -> str:
    """The 4-byte function selector of `name(type,...)`, as 8 hex digits."""
    return keccak(signature.encode())[:4].hex()


@functools.cache  # a handful of types, asked for every word of every log
def _int_bounds(abi_type: str) -> tuple[int, int] | None:
    """[low, high) of `uintN`/`intN` (N a multiple of 8 up to 256; no N means 256), else None."""
    signed = abi_type.startswith("int")
    if not (signed or abi_type.startswith("uint")):
        return None
    bits_text = abi_type[3 if signed else 4:] or "256"
    if not bits_text.isdigit() or not 8 <= int(bits_text) <= 256 or int(bits_text) % 8:
        return None
    bits = int(bits_text)
    return (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)


def _check_one_word(abi_type: str) -> None:
    if abi_type not in ("address", "bool") and _int_bounds(abi_type) is None:
        raise AbiMismatch(f"{abi_type} is not a one-word static type; this decoder does not read it")


def decode_word(word: bytes, abi_type: str) -> int | str | bool:
    """One 32-byte word as `abi_type`; AbiMismatch when the word is out of the type's range."""
    if abi_type == "address":
        if any(word[:12]):
            raise AbiMismatch("an address word with non-zero padding")
        return "0x" + word[12:].hex()
    if abi_type == "bool":
        value = int.from_bytes(word, "big")
        if value not in (0, 1):
            raise AbiMismatch(f"a bool word holding {value}")
        return value == 1
    bounds = _int_bounds(abi_type)
    if bounds is None:
        raise AbiMismatch(f"{abi_type} is not a one-word static type; this decoder does not read it")
    value = int.from_bytes(word, "big", signed=bounds[0] < 0)
    if not bounds[0] <= value < bounds[1]:
        raise AbiMismatch(f"{value} does not fit {abi_type}")
    return value


def decode_words(data: str, abi_types: list[str]) -> list[int | str | bool]:
    """0x-hex data holding exactly one word per type (a call's return data, a log's data)."""
    raw = _hex_bytes(data)
    if len(raw) != WORD * len(abi_types):
        raise AbiMismatch(f"{len(raw)} bytes where {len(abi_types)} words were expected")
    return [decode_word(raw[i * WORD:(i + 1) * WORD], t) for i, t in enumerate(abi_types)]


def _hex_bytes(data: Any) -> bytes:
    if not isinstance(data, str) or not data.startswith("0x"):
        raise AbiMismatch(f"{str(data)[:40]!r} is not 0x-hex")
    try:
        return bytes.fromhex(data[2:])
    except ValueError as exc:
        raise AbiMismatch(f"{data[:40]!r}… is not 0x-hex") from exc


@dataclass(frozen=True)
class EventLayout:
    """Where each field of one event sits: indexed fields in topics 1.., the rest in the data words."""

    name: str
    topic: str  # 0x-hex keccak of the signature: topics[0] of every log of this event
    indexed: tuple[tuple[str, str], ...]
    unindexed: tuple[tuple[str, str], ...]

    @classmethod
    def from_abi(cls, entry: dict[str, Any]) -> EventLayout:
        """The layout of one ABI event entry; AbiMismatch for a field this decoder cannot read."""
        inputs = entry["inputs"]
        for field in inputs:
            _check_one_word(field["type"])
        signature = f"{entry['name']}({','.join(field['type'] for field in inputs)})"
        return cls(
            name=entry["name"],
            topic="0x" + keccak(signature.encode()).hex(),
            indexed=tuple((f["name"], f["type"]) for f in inputs if f["indexed"]),
            unindexed=tuple((f["name"], f["type"]) for f in inputs if not f["indexed"]),
        )

    def decode(self, topics: list[str], data: str) -> dict[str, int | str | bool]:
        """The event's fields by name; AbiMismatch when topics or data do not fit the layout."""
        if len(topics) != 1 + len(self.indexed):
            raise AbiMismatch(f"{self.name} has {len(self.indexed)} indexed fields, the log {len(topics) - 1}")
        fields: dict[str, int | str | bool] = {}
        for (name, abi_type), topic in zip(self.indexed, topics[1:], strict=True):
            word = _hex_bytes(topic)
            if len(word) != WORD:
                raise AbiMismatch(f"{self.name}.{name}: a topic of {len(word)} bytes")
            fields[name] = decode_word(word, abi_type)
        values = decode_words(data, [abi_type for _name, abi_type in self.unindexed])
        fields.update(zip((name for name, _type in self.unindexed), values, strict=True))
        return fields


def event_layouts(abi: list[dict[str, Any]]) -> dict[str, EventLayout]:
    """topic0 -> layout, for every non-anonymous event of a contract's ABI."""
    layouts = [EventLayout.from_abi(entry) for entry in abi if entry["type"] == "event" and not entry.get("anonymous")]
    return {layout.topic: layout for layout in layouts}
