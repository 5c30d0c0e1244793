"""web3.py for what writes to the chain: the local stack, its drivers and the tests (the functions read
the chain with `shared.chain.rpc`, without web3)."""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.contract import Contract

from shared.chain.abi import load_artifact


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
