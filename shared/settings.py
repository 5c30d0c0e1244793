"""Configuration, read from the environment in one place per domain and validated at cold start.

Every function builds its `Settings` at import time, so a missing variable stops the instance before it
takes a message. This module holds what every function reads (service, project, database, publishing)
and the reader; each domain declares its own part next to its code (shared/relay/settings.py,
shared/risk/settings.py, …), and main.py names the parts it needs:

    SETTINGS = Settings.from_env(parts=[RiskSettings])
    RiskEngine(SETTINGS.part(RiskSettings))

All parts read through one reader, so one error names every missing or malformed variable. There is no
default for anything that decides where data goes (database, project, chain, contract); only tuning
knobs have defaults, and they are named next to the part that reads them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, Self, TypeVar

from shared.assets import Asset, parse_assets
from shared.errors import ConfigurationError

DEFAULT_PUBLISH_TIMEOUT_SECONDS = 30.0
# The Pub/Sub emulator to talk to instead of Pub/Sub, as host:port (the local stack and the tests; never
# set in GCP). The name is google-cloud-pubsub's.
PUBSUB_EMULATOR_HOST = "PUBSUB_EMULATOR_HOST"
# Set from shared/topology.yaml by Terraform and the stack.
FUNCTION_TIMEOUT_SECONDS = "FUNCTION_TIMEOUT_SECONDS"
# How long an out-of-order event waits (by redelivery) for the event it depends on.
DEFAULT_PREREQUISITE_GRACE_SECONDS = 600.0


_HOST_AND_PORT = re.compile(r"[A-Za-z0-9.\-]+:[0-9]{1,5}")


def pubsub_emulator_host() -> str | None:
    """The emulator's host:port, or None for Pub/Sub itself. Read on each call, as the library's clients
    do (checked at startup by Settings.from_env)."""
    return EnvReader(os.environ).optional(PUBSUB_EMULATOR_HOST)


class EnvReader:
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

    def decimal(self, name: str, default: Decimal) -> Decimal:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number < 0:
            self.malformed.append(f"{name}={value!r} is not a non-negative decimal")
            return default
        return number

    def assets(self) -> tuple[Asset, ...]:
        text = self.required("PRICE_ASSETS")
        if not text:
            return ()
        try:
            return parse_assets(text)
        except ConfigurationError as exc:
            self.malformed.append(str(exc))
            return ()

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


class SettingsPart(Protocol):
    """A domain's settings: read from the environment through the shared reader."""

    @classmethod
    def read(cls, reader: EnvReader) -> Self:
        """Read this part's variables, recording what is missing or malformed."""
        ...


Part = TypeVar("Part", bound=SettingsPart)


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
    def read(cls, reader: EnvReader) -> DatabaseSettings:
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
class Settings:
    """Everything a function needs to run, validated once per instance."""

    service: str
    project_id: str
    database: DatabaseSettings
    publish_timeout_seconds: float
    prerequisite_grace_seconds: float = DEFAULT_PREREQUISITE_GRACE_SECONDS
    # The function's timeout (shared/topology.yaml, set by Terraform and the stack): a delivery's drains use
    # what its work leaves of it (shared/messaging/consumer.py). None outside a function.
    function_timeout_seconds: int | None = None
    # The domain parts main.py asked for, by class.
    parts: Mapping[type, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, parts: Iterable[type[SettingsPart]] = ()) -> Settings:
        """Build settings and the given parts from the environment; raise ConfigurationError naming every
        missing or malformed variable."""
        reader = EnvReader(os.environ if env is None else env)
        service = reader.required("SERVICE_NAME")
        settings = cls(
            service=service,
            project_id=reader.required("GCP_PROJECT"),
            database=DatabaseSettings.read(reader),
            publish_timeout_seconds=reader.number("PUBLISH_TIMEOUT_SECONDS", DEFAULT_PUBLISH_TIMEOUT_SECONDS),
            prerequisite_grace_seconds=reader.number("PREREQUISITE_GRACE_SECONDS",
                                                     DEFAULT_PREREQUISITE_GRACE_SECONDS),
            function_timeout_seconds=_function_timeout(reader),
            parts={part: part.read(reader) for part in parts},
        )
        emulator = reader.optional(PUBSUB_EMULATOR_HOST)
        if emulator is not None and not _HOST_AND_PORT.fullmatch(emulator):
            reader.malformed.append(f"{PUBSUB_EMULATOR_HOST}={emulator!r} is not host:port")
        reader.raise_if_incomplete(service)
        return settings

    def part(self, kind: type[Part]) -> Part:
        """The part of class `kind`, which main.py must have asked for."""
        if kind not in self.parts:
            raise ConfigurationError(f"{self.service}: {kind.__name__} was not loaded")
        value: Part = self.parts[kind]
        return value


def _function_timeout(reader: EnvReader) -> int | None:
    """FUNCTION_TIMEOUT_SECONDS, a positive whole number of seconds, or None when unset."""
    value = reader.optional(FUNCTION_TIMEOUT_SECONDS)
    if value is None:
        return None
    seconds = int(value) if value.isascii() and value.isdigit() else 0
    if seconds <= 0:
        reader.malformed.append(f"{FUNCTION_TIMEOUT_SECONDS}={value!r} is not a positive whole number of seconds")
        return None
    return seconds
