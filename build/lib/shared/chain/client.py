"""web3.py over HTTP, created once per instance, with provider failures mapped to ChainUnavailable."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

ARTIFACTS_DIR = Path(__file__).with_name("artifacts")

# A JSON-RPC call slower than this is treated as a provider failure; the tick is retried.
RPC_TIMEOUT_SECONDS = 10


@functools.cache
def get_web3(rpc_url: str) -> Web3:
    """The instance's web3 client for `rpc_url`."""
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_SECONDS}))


@functools.cache
def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact (abi, bytecode) of a project contract."""
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())


def escrow_contract(w3: Web3, address: str) -> Contract:
    """The deployed escrow contract at `address`."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("Escrow")["abi"])


def deploy_contract(w3: Web3, name: str, deployer: str, *args: Any) -> str:
    """Deploy a project contract from `deployer` and return its address (local stack and tests)."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": deployer})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    address = receipt["contractAddress"]
    if address is None:
        raise RuntimeError(f"deploying {name} created no contract (tx {tx_hash.hex()})")
    return address
