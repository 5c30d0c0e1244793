"""Configuration, read from the environment in this one place and validated at cold start.

Every function builds its `Settings` at import time, so a missing variable stops the instance before it
takes a message. There is no default for anything that decides where data goes (database, project,
chain, contract); only tuning knobs have defaults, and they are named here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.errors import ConfigurationError

DEFAULT_PUBLISH_TIMEOUT_SECONDS = 30.0
DEFAULT_PREREQUISITE_GRACE_SECONDS = 600.0
DEFAULT_RELAY_BLOCK_RANGE = 2000
DEFAULT_RELAY_TIME_BUDGET_SECONDS = 45.0


class _Reader:
    """Reads variables and remembers every missing or malformed one, so one error names them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.missing: list[str] = []
        self.malformed: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.missing.append(name)
            return ""
        return value

    def integer(self, name: str, value: str | None, default: int | None = None) -> int:
        if value is None or value == "":
            return default if default is not None else 0
        try:
            return int(value)
        except ValueError:
            self.malformed.append(f"{name}={value!r} is not an integer")
            return 0

    def number(self, name: str, default: float) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            self.malformed.append(f"{name}={value!r} is not a number")
            return default

    def raise_if_incomplete(self, service: str) -> None:
        problems = []
        if self.missing:
            problems.append("missing " + ", ".join(self.missing))
        problems.extend(self.malformed)
        if problems:
            raise ConfigurationError(
                f"{service or 'service'}: configuration incomplete: " + "; ".join(problems),
                missing=tuple(self.missing),
            )


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the function's PostgreSQL is and who it connects as.

    Exactly one way to reach the server: TCP (`DB_HOST` and `DB_PORT`, local stack and tests) or the
    Cloud SQL Python Connector (`DB_INSTANCE_CONNECTION_NAME`, with IAM database authentication).
    """

    name: str
    user: str
    host: str | None
    port: int | None
    instance_connection_name: str | None

    @classmethod
    def read(cls, reader: _Reader) -> DatabaseSettings:
        """Read the DB_* variables, recording what is missing."""
        name = reader.required("DB_NAME")
        user = reader.required("DB_USER")
        instance = reader.optional("DB_INSTANCE_CONNECTION_NAME")
        host = reader.optional("DB_HOST")
        port_text = reader.optional("DB_PORT")
        if instance is None:
            # TCP is the only other way in; a half-configured TCP target is named precisely.
            if host is None:
                reader.missing.append("DB_HOST (or DB_INSTANCE_CONNECTION_NAME)")
            if port_text is None:
                reader.missing.append("DB_PORT (or DB_INSTANCE_CONNECTION_NAME)")
        elif host is not None:
            reader.malformed.append("set DB_HOST or DB_INSTANCE_CONNECTION_NAME, not both")
        port = reader.integer("DB_PORT", port_text) if port_text else None
        return cls(name=name, user=user, host=host, port=port, instance_connection_name=instance)


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
    def read(cls, reader: _Reader) -> ChainSettings:
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


@dataclass(frozen=True)
class Settings:
    """Everything a function needs to run, validated once per instance."""

    service: str
    project_id: str
    database: DatabaseSettings
    publish_timeout_seconds: float
    # How long an out-of-order event waits (by redelivery) for the event it depends on.
    prerequisite_grace_seconds: float = DEFAULT_PREREQUISITE_GRACE_SECONDS
    chain: ChainSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, chain: bool = False) -> Settings:
        """Build settings from the environment; raise ConfigurationError naming every missing variable."""
        reader = _Reader(os.environ if env is None else env)
        service = reader.required("SERVICE_NAME")
        settings = cls(
            service=service,
            project_id=reader.required("GCP_PROJECT"),
            database=DatabaseSettings.read(reader),
            publish_timeout_seconds=reader.number(
                "PUBLISH_TIMEOUT_SECONDS", DEFAULT_PUBLISH_TIMEOUT_SECONDS
            ),
            prerequisite_grace_seconds=reader.number(
                "PREREQUISITE_GRACE_SECONDS", DEFAULT_PREREQUISITE_GRACE_SECONDS
            ),
            chain=ChainSettings.read(reader) if chain else None,
        )
        reader.raise_if_incomplete(service)
        return settings

    def require_chain(self) -> ChainSettings:
        """The chain settings, for services built with `chain=True`."""
        if self.chain is None:
            raise ConfigurationError(f"{self.service}: chain settings were not loaded")
        return self.chain
