"""Drives the escrow contract on anvil the way users would (demo and tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from web3 import Web3


@dataclass(frozen=True)
class CreatedEscrow:
    """An escrow created on chain, as the transaction receipt tells it."""

    escrow_id: int
    depositor: str
    beneficiary: str
    amount_wei: int
    obligation_usd_units: int
    tx_hash: str
    block_number: int


def create_escrow(w3: Web3, contract, depositor: str, beneficiary: str, amount_wei: int,
                  obligation_usd_units: int, lifetime_seconds: int = 30 * 86400) -> CreatedEscrow:
    """Send `create` from `depositor` and return what the EscrowCreated log says."""
    deadline = w3.eth.get_block("latest")["timestamp"] + lifetime_seconds
    tx_hash = contract.functions.create(beneficiary, obligation_usd_units, deadline).transact(
        {"from": depositor, "value": amount_wei}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    event = contract.events.EscrowCreated().process_receipt(receipt)[0]
    return CreatedEscrow(
        escrow_id=event["args"]["escrowId"],
        depositor=event["args"]["depositor"],
        beneficiary=event["args"]["beneficiary"],
        amount_wei=event["args"]["amount"],
        obligation_usd_units=event["args"]["obligationUsd"],
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=receipt["blockNumber"],
    )


def transact(w3: Web3, call, sender: str, value: int = 0) -> dict:
    """Send a contract call from `sender` and return its receipt; fail loudly if it reverted."""
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}), timeout=30)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction reverted: {receipt['transactionHash'].to_0x_hex()}")
    return receipt


def approve(w3: Web3, contract, escrow: CreatedEscrow) -> dict:
    """The beneficiary accepts the escrow."""
    return transact(w3, contract.functions.approve(escrow.escrow_id), escrow.beneficiary)


def complete(w3: Web3, contract, escrow: CreatedEscrow) -> dict:
    """The depositor releases the collateral to the beneficiary."""
    return transact(w3, contract.functions.complete(escrow.escrow_id), escrow.depositor)


def refund(w3: Web3, contract, escrow: CreatedEscrow) -> dict:
    """The depositor takes the collateral back."""
    return transact(w3, contract.functions.refund(escrow.escrow_id), escrow.depositor)


def reorg(w3: Web3, depth: int, replacement_txs: list[tuple[dict, int]] = ()) -> None:
    """Replace the newest `depth` blocks (anvil_reorg); the replaced blocks' transactions are dropped."""
    wire = [[{k: hex(v) if isinstance(v, int) else v for k, v in tx.items()}, offset]
            for tx, offset in replacement_txs]
    reply = w3.provider.make_request("anvil_reorg", [depth, wire])
    if "error" in reply:
        raise RuntimeError(f"anvil_reorg failed: {reply['error']}")


def mine(w3: Web3, blocks: int) -> None:
    """Mine `blocks` empty blocks so earlier ones reach the confirmation depth."""
    w3.provider.make_request("anvil_mine", [hex(blocks)])


def wait_for(check, what: str, timeout: float = 30.0, interval: float = 0.25):
    """Poll `check` until it returns something truthy; return it, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {result!r})")


def wait_for_equal(get, expected, what: str, timeout: float = 30.0, interval: float = 0.25):
    """Poll `get()` until it equals `expected`; fail showing the last value seen."""
    last = []

    def matches():
        last[:] = [get()]
        return last[0] == expected

    try:
        wait_for(matches, what, timeout, interval)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: "
                           f"expected {expected!r}, last seen {last[0]!r}") from None


def new_funded_account(w3: Web3, balance_wei: int = 100 * 10**18) -> str:
    """A fresh address anvil funds and lets us send from (impersonation), for a depositor of our own."""
    from eth_account import Account

    address = Account.create().address
    w3.provider.make_request("anvil_setBalance", [address, hex(balance_wei)])
    w3.provider.make_request("anvil_impersonateAccount", [address])
    return address
