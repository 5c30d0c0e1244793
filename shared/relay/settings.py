"""relay's settings: the Ethereum node and escrow contract it reads, and how it paces a tick."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import EnvReader

DEFAULT_RELAY_BLOCK_RANGE = 2000
DEFAULT_RELAY_TIME_BUDGET_SECONDS = 45.0


@dataclass(frozen=True)
class ChainSettings:
    """The Ethereum node and escrow contract that `relay` reads."""

    rpc_url: str
    chain_id: int
    escrow_address: str
    confirmations: int
    start_block: int
    block_range: int
    time_budget_seconds: float

    @classmethod
    def read(cls, reader: EnvReader) -> ChainSettings:
        """Read the chain variables, recording what is missing."""
        return cls(
            rpc_url=reader.required("ETH_RPC_URL"),
            chain_id=reader.integer("CHAIN_ID", reader.required("CHAIN_ID")),
            escrow_address=reader.required("ESCROW_CONTRACT_ADDRESS"),
            confirmations=reader.integer("CONFIRMATIONS", reader.required("CONFIRMATIONS")),
            start_block=reader.integer("RELAY_START_BLOCK", reader.optional("RELAY_START_BLOCK"), 0),
            block_range=reader.integer(
                "RELAY_BLOCK_RANGE", reader.optional("RELAY_BLOCK_RANGE"), DEFAULT_RELAY_BLOCK_RANGE
            ),
            time_budget_seconds=reader.number(
                "RELAY_TIME_BUDGET_SECONDS", DEFAULT_RELAY_TIME_BUDGET_SECONDS
            ),
        )
