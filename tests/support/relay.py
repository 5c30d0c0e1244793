"""A relay instance of a test's own: its own escrow contract, tick topic and push subscription.

relay's checkpoint is per contract, so each such instance scans only its contract's logs, while
its events still flow through the real settlement.events.v1 into the stack's settle.
"""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass

import sqlalchemy

from shared.chain.client import deploy_contract, escrow_contract
from shared.stack import services
from shared.stack.chain_driver import wait_for
from shared.stack.stack import CONFIRMATIONS


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class IsolatedRelay:
    """A running relay on a contract only one test uses."""

    stack: object
    bus: object
    contract: object
    tick_topic: str
    port: int
    pid: int
    env_overrides: dict

    def tick(self) -> None:
        """Publish one Scheduler-like tick to this relay."""
        self.bus.publish(self.tick_topic, json.dumps({"source": "test"}).encode())

    def checkpoint(self, engine) -> tuple | None:
        """(block_number, block_hash, range_size) of this relay's checkpoint."""
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT block_number, block_hash, range_size FROM relay.checkpoints WHERE contract = :c"
            ), {"c": self.contract.address.lower()}).first()

    def wait_caught_up(self, engine, timeout: float = 60.0) -> None:
        """Tick until the checkpoint reaches head - confirmations."""
        w3 = self.stack.web3()
        target = w3.eth.block_number - CONFIRMATIONS
        if target < int(self.env_overrides["RELAY_START_BLOCK"]):
            return  # nothing this relay may scan yet

        def caught_up():
            self.tick()
            row = self.checkpoint(engine)
            return row is not None and row.block_number >= target

        wait_for(caught_up, f"relay for {self.contract.address} to reach block {target}", timeout, interval=1.0)

    def restart(self, **env_overrides) -> None:
        """Stop this instance and start a new one on the same port."""
        services.stop(self.pid)
        self.env_overrides.update(env_overrides)
        self.pid = _start(self.stack, self.contract.address, self.port, self.tick_topic, self.env_overrides)

    def stop(self) -> None:
        """Stop the instance."""
        services.stop(self.pid)


def _start(stack, address: str, port: int, tick_topic: str, env_overrides: dict) -> int:
    return stack.start_function(stack.topology.function("relay"), None, address, port=port,
                                instance=f"relay-{tick_topic}", env_overrides=env_overrides)


def start_isolated_relay(stack, bus, **env_overrides: str) -> IsolatedRelay:
    """Deploy a fresh escrow contract and run a relay for it alone."""
    w3 = stack.web3()
    address = deploy_contract(w3, "Escrow", w3.eth.accounts[0])
    env = {"RELAY_START_BLOCK": str(w3.eth.block_number + 1), **env_overrides}
    tick_topic = f"test-tick-{uuid.uuid4().hex[:10]}"
    bus.create_topic(tick_topic)
    bus.create_topic(tick_topic + ".dlq")
    port = free_port()
    pid = _start(stack, address, port, tick_topic, env)
    bus.push_subscription(tick_topic, f"http://127.0.0.1:{port}/", tick_topic + ".dlq", max_attempts=5)
    return IsolatedRelay(stack, bus, escrow_contract(w3, address), tick_topic, port, pid, env)
