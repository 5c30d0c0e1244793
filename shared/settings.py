"""Configuration, read from the environment in this one place and validated at cold start.

Every function builds its `Settings` at import time, so a missing variable stops the instance before it
takes a message. There is no default for anything that decides where data goes (database, project,
chain, contract); only tuning knobs have defaults, and they are named here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from shared.assets import Asset, parse_assets
from shared.errors import ConfigurationError
from shared.risk.tiers import THRESHOLD_TIERS

DEFAULT_PUBLISH_TIMEOUT_SECONDS = 30.0
DEFAULT_PREREQUISITE_GRACE_SECONDS = 600.0
DEFAULT_RELAY_BLOCK_RANGE = 2000
DEFAULT_RELAY_TIME_BUDGET_SECONDS = 45.0
# A price fetched this recently is not fetched again.
DEFAULT_PRICE_CACHE_TTL_SECONDS = 30.0
# Sources further apart than this (relative to the lower one) make the price suspect.
DEFAULT_PRICE_MAX_SOURCE_SPREAD = Decimal("0.02")
# A move beyond this from the last good price, in one round, is held until the next round confirms it.
DEFAULT_PRICE_MAX_JUMP = Decimal("0.5")
DEFAULT_COINGECKO_TIMEOUT_SECONDS = 10.0
DEFAULT_COINGECKO_MAX_ATTEMPTS = 3
DEFAULT_COINGECKO_MAX_RETRY_WAIT_SECONDS = 10.0
# Health-factor tiers (Aave-like): below each threshold a position is in that tier.
DEFAULT_RISK_TIER_THRESHOLDS = "WARNING=1.5,MARGIN_CALL=1.2,LIQUIDATION=1.0"
# A provider call (SendGrid, Twilio, a webhook) that takes longer than this is a transient failure.
DEFAULT_NOTIFY_PROVIDER_TIMEOUT_SECONDS = 10.0
# Attempts per delivery before a transient failure becomes final.
DEFAULT_NOTIFY_MAX_ATTEMPTS = 5
DEFAULT_NOTIFY_ATTEMPTS_PER_CALL = 3
# A position leaves a worse tier only once its health factor is this far above the tier's threshold.
DEFAULT_RISK_HYSTERESIS = Decimal("0.05")
DEFAULT_COMPLIANCE_MIN_AGE = 18
# Name match scores (0-1): at or above REVIEW a human looks; between REPORT and REVIEW it feeds the score.
DEFAULT_NAME_MATCH_REVIEW_THRESHOLD = 0.92
DEFAULT_NAME_MATCH_REPORT_THRESHOLD = 0.85
DEFAULT_AML_REVIEW_SCORE = 50
DEFAULT_SANCTIONS_FETCH_TIMEOUT_SECONDS = 60.0
# A rescreening fans out into shards of about this many users (one `rescreen` invocation each, ~10 s);
# users still behind this long after the last fan-out are fanned out again.
DEFAULT_RESCREEN_SHARD_USERS = 1000
DEFAULT_RESCREEN_REPLAN_SECONDS = 1800.0
# The reconciler leaves alone what changed more recently than this: it may still be in flight.
DEFAULT_RECONCILE_GRACE_SECONDS = 120.0
# A dead letter is moved back to its topic at most this many times; then it is held for a person.
DEFAULT_REDRIVE_MAX = 3
# Escrows the rolling chain sweep reads per run (batched eth_call), besides the recently changed ones.
DEFAULT_RECONCILE_SWEEP_BATCH = 2000


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
class PriceSettings:
    """What `fetch-price` reads prices from and how it guards them."""

    assets: tuple[Asset, ...]
    rpc_url: str
    coingecko_base_url: str
    coingecko_api_key: str
    cache_ttl_seconds: float
    max_source_spread: Decimal
    max_jump: Decimal
    coingecko_timeout_seconds: float
    coingecko_max_attempts: int
    coingecko_max_retry_wait_seconds: float

    @classmethod
    def read(cls, reader: _Reader) -> PriceSettings:
        """Read the price variables, recording what is missing."""
        return cls(
            assets=reader.assets(),
            rpc_url=reader.required("ETH_RPC_URL"),
            coingecko_base_url=reader.required("COINGECKO_BASE_URL").rstrip("/"),
            coingecko_api_key=reader.required("COINGECKO_API_KEY"),
            cache_ttl_seconds=reader.number("PRICE_CACHE_TTL_SECONDS", DEFAULT_PRICE_CACHE_TTL_SECONDS),
            max_source_spread=reader.decimal("PRICE_MAX_SOURCE_SPREAD", DEFAULT_PRICE_MAX_SOURCE_SPREAD),
            max_jump=reader.decimal("PRICE_MAX_JUMP", DEFAULT_PRICE_MAX_JUMP),
            coingecko_timeout_seconds=reader.number("COINGECKO_TIMEOUT_SECONDS", DEFAULT_COINGECKO_TIMEOUT_SECONDS),
            coingecko_max_attempts=reader.integer(
                "COINGECKO_MAX_ATTEMPTS", reader.optional("COINGECKO_MAX_ATTEMPTS"), DEFAULT_COINGECKO_MAX_ATTEMPTS
            ),
            coingecko_max_retry_wait_seconds=reader.number(
                "COINGECKO_MAX_RETRY_WAIT_SECONDS", DEFAULT_COINGECKO_MAX_RETRY_WAIT_SECONDS
            ),
        )


@dataclass(frozen=True)
class RiskSettings:
    """The assets `assess-margin` knows and its tier policy."""

    assets: tuple[Asset, ...]
    # (tier name, health factor below which a position is in it), best to worst.
    tier_thresholds: tuple[tuple[str, Decimal], ...]
    hysteresis: Decimal
    # The same bound fetch-price holds prices to: a larger unconfirmed move is refused, not applied.
    max_jump: Decimal

    @classmethod
    def read(cls, reader: _Reader) -> RiskSettings:
        """Read the risk variables, recording what is missing or malformed."""
        text = reader.optional("RISK_TIER_THRESHOLDS") or DEFAULT_RISK_TIER_THRESHOLDS
        thresholds: dict[str, Decimal] = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            try:
                thresholds[name.strip()] = Decimal(value.strip())
            except InvalidOperation:
                reader.malformed.append(f"RISK_TIER_THRESHOLDS: {part!r} is not NAME=decimal")
        expected = THRESHOLD_TIERS
        if set(thresholds) != set(expected):
            reader.malformed.append(f"RISK_TIER_THRESHOLDS must set exactly {', '.join(expected)}")
        elif not thresholds["WARNING"] > thresholds["MARGIN_CALL"] > thresholds["LIQUIDATION"] > 0:
            reader.malformed.append("RISK_TIER_THRESHOLDS must fall: WARNING > MARGIN_CALL > LIQUIDATION > 0")
        return cls(
            assets=reader.assets(),
            tier_thresholds=tuple((name, thresholds.get(name, Decimal(0))) for name in expected),
            hysteresis=reader.decimal("RISK_HYSTERESIS", DEFAULT_RISK_HYSTERESIS),
            max_jump=reader.decimal("PRICE_MAX_JUMP", DEFAULT_PRICE_MAX_JUMP),
        )


@dataclass(frozen=True)
class NotifySettings:
    """Where `notify` sends email, SMS and webhooks, and how hard it tries."""

    sendgrid_base_url: str
    sendgrid_api_key: str
    email_from: str
    twilio_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    sms_from: str
    twilio_status_callback_url: str | None
    webhook_signing_key: str
    # Local stack and tests only: webhooks to http://127.0.0.1 pass the SSRF guard.
    webhook_allow_loopback: bool
    provider_timeout_seconds: float
    max_attempts: int
    # Quick attempts inside one invocation before Pub/Sub's redelivery takes over.
    attempts_per_call: int

    @classmethod
    def read(cls, reader: _Reader) -> NotifySettings:
        """Read the notify variables, recording what is missing."""
        loopback = (reader.optional("WEBHOOK_ALLOW_LOOPBACK") or "false").lower()
        if loopback not in ("true", "false"):
            reader.malformed.append(f"WEBHOOK_ALLOW_LOOPBACK={loopback!r} is not true or false")
        return cls(
            sendgrid_base_url=reader.optional("SENDGRID_BASE_URL") or "https://api.sendgrid.com",
            sendgrid_api_key=reader.required("SENDGRID_API_KEY"),
            email_from=reader.required("EMAIL_FROM"),
            twilio_base_url=reader.optional("TWILIO_BASE_URL") or "https://api.twilio.com",
            twilio_account_sid=reader.required("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=reader.required("TWILIO_AUTH_TOKEN"),
            sms_from=reader.required("SMS_FROM"),
            twilio_status_callback_url=reader.optional("TWILIO_STATUS_CALLBACK_URL"),
            webhook_signing_key=reader.required("WEBHOOK_SIGNING_KEY"),
            webhook_allow_loopback=loopback == "true",
            provider_timeout_seconds=reader.number("NOTIFY_PROVIDER_TIMEOUT_SECONDS",
                                                   DEFAULT_NOTIFY_PROVIDER_TIMEOUT_SECONDS),
            max_attempts=reader.integer("NOTIFY_MAX_ATTEMPTS", reader.optional("NOTIFY_MAX_ATTEMPTS"),
                                        DEFAULT_NOTIFY_MAX_ATTEMPTS),
            attempts_per_call=reader.integer("NOTIFY_ATTEMPTS_PER_CALL", reader.optional("NOTIFY_ATTEMPTS_PER_CALL"),
                                             DEFAULT_NOTIFY_ATTEMPTS_PER_CALL),
        )


@dataclass(frozen=True)
class CallbackSettings:
    """How the public callbacks endpoint checks who is calling."""

    # SendGrid's event webhook verification key (base64 DER, as SendGrid shows it).
    sendgrid_webhook_public_key: str
    twilio_auth_token: str
    # The exact URL Twilio calls (part of what X-Twilio-Signature signs).
    twilio_status_callback_url: str

    @classmethod
    def read(cls, reader: _Reader) -> CallbackSettings:
        """Read the callback variables, recording what is missing."""
        return cls(
            sendgrid_webhook_public_key=reader.required("SENDGRID_WEBHOOK_PUBLIC_KEY"),
            twilio_auth_token=reader.required("TWILIO_AUTH_TOKEN"),
            twilio_status_callback_url=reader.required("TWILIO_STATUS_CALLBACK_URL"),
        )


def _jurisdictions(reader: _Reader, name: str) -> frozenset[str]:
    """A comma-separated list of ISO 3166-1 alpha-2 codes; required (it may be `none`)."""
    import pycountry

    text = reader.required(name)
    if text.lower() == "none":
        return frozenset()
    codes = frozenset(code.strip().upper() for code in text.split(",") if code.strip())
    unknown = sorted(code for code in codes if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None)
    if unknown:
        reader.malformed.append(f"{name}: {', '.join(unknown)} not ISO 3166-1 alpha-2 codes")
    return codes


@dataclass(frozen=True)
class ComplianceSettings:
    """The screening policy of `screen-compliance` and `refresh-sanctions`.

    The jurisdiction lists are policy, not tuning, so they have no default: a deployment states them
    (`none` for an empty list).
    """

    min_age: int
    prohibited_jurisdictions: frozenset[str]
    high_risk_jurisdictions: frozenset[str]
    name_review_threshold: float
    name_report_threshold: float
    aml_review_score: int

    @classmethod
    def read(cls, reader: _Reader) -> ComplianceSettings:
        """Read the compliance policy, recording what is missing or malformed."""
        settings = cls(
            min_age=reader.integer("COMPLIANCE_MIN_AGE", reader.optional("COMPLIANCE_MIN_AGE"),
                                   DEFAULT_COMPLIANCE_MIN_AGE),
            prohibited_jurisdictions=_jurisdictions(reader, "PROHIBITED_JURISDICTIONS"),
            high_risk_jurisdictions=_jurisdictions(reader, "HIGH_RISK_JURISDICTIONS"),
            name_review_threshold=reader.number("NAME_MATCH_REVIEW_THRESHOLD", DEFAULT_NAME_MATCH_REVIEW_THRESHOLD),
            name_report_threshold=reader.number("NAME_MATCH_REPORT_THRESHOLD", DEFAULT_NAME_MATCH_REPORT_THRESHOLD),
            aml_review_score=reader.integer("AML_REVIEW_SCORE", reader.optional("AML_REVIEW_SCORE"),
                                            DEFAULT_AML_REVIEW_SCORE),
        )
        if not 0 < settings.name_report_threshold <= settings.name_review_threshold <= 1:
            reader.malformed.append("need 0 < NAME_MATCH_REPORT_THRESHOLD <= NAME_MATCH_REVIEW_THRESHOLD <= 1")
        if not 0 < settings.aml_review_score <= 100:
            reader.malformed.append("AML_REVIEW_SCORE must be 1 to 100")
        return settings


@dataclass(frozen=True)
class SanctionsSourceSettings:
    """Where `refresh-sanctions` downloads OFAC's files from."""

    # Base URL of SDN.CSV, ALT.CSV, ADD.CSV and SDN_COMMENTS.CSV.
    list_base_url: str
    # A plain-text list of sanctioned ETH addresses (OFAC lists some only in its XML); optional.
    address_list_url: str | None
    timeout_seconds: float
    rescreen_shard_users: int
    rescreen_replan_seconds: float

    @classmethod
    def read(cls, reader: _Reader) -> SanctionsSourceSettings:
        """Read the list source and the rescreening's fan-out, recording what is missing or malformed."""
        settings = cls(
            list_base_url=reader.required("SANCTIONS_LIST_BASE_URL").rstrip("/"),
            address_list_url=reader.optional("SANCTIONED_ADDRESSES_URL"),
            timeout_seconds=reader.number("SANCTIONS_FETCH_TIMEOUT_SECONDS", DEFAULT_SANCTIONS_FETCH_TIMEOUT_SECONDS),
            rescreen_shard_users=reader.integer("RESCREEN_SHARD_USERS", reader.optional("RESCREEN_SHARD_USERS"),
                                                DEFAULT_RESCREEN_SHARD_USERS),
            rescreen_replan_seconds=reader.number("RESCREEN_REPLAN_SECONDS", DEFAULT_RESCREEN_REPLAN_SECONDS),
        )
        if settings.rescreen_shard_users < 1 or settings.rescreen_replan_seconds <= 0:
            reader.malformed.append("RESCREEN_SHARD_USERS must be at least 1 and RESCREEN_REPLAN_SECONDS positive")
        return settings


@dataclass(frozen=True)
class ReconcileSettings:
    """How the reconciler paces itself."""

    grace_seconds: float
    redrive_max: int
    sweep_batch: int

    @classmethod
    def read(cls, reader: _Reader) -> ReconcileSettings:
        """Read the reconciler's tuning (all optional)."""
        settings = cls(
            grace_seconds=reader.number("RECONCILE_GRACE_SECONDS", DEFAULT_RECONCILE_GRACE_SECONDS),
            redrive_max=reader.integer("REDRIVE_MAX", reader.optional("REDRIVE_MAX"), DEFAULT_REDRIVE_MAX),
            sweep_batch=reader.integer("RECONCILE_SWEEP_BATCH", reader.optional("RECONCILE_SWEEP_BATCH"),
                                       DEFAULT_RECONCILE_SWEEP_BATCH),
        )
        if settings.redrive_max < 1 or settings.sweep_batch < 1:
            reader.malformed.append("REDRIVE_MAX and RECONCILE_SWEEP_BATCH must be at least 1")
        return settings


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
    prices: PriceSettings | None = None
    risk: RiskSettings | None = None
    notify: NotifySettings | None = None
    callbacks: CallbackSettings | None = None
    compliance: ComplianceSettings | None = None
    sanctions_source: SanctionsSourceSettings | None = None
    reconcile: ReconcileSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, chain: bool = False, prices: bool = False,
                 risk: bool = False, notify: bool = False, callbacks: bool = False, compliance: bool = False,
                 sanctions_source: bool = False, reconcile: bool = False) -> Settings:
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
            prices=PriceSettings.read(reader) if prices else None,
            risk=RiskSettings.read(reader) if risk else None,
            notify=NotifySettings.read(reader) if notify else None,
            callbacks=CallbackSettings.read(reader) if callbacks else None,
            compliance=ComplianceSettings.read(reader) if compliance else None,
            sanctions_source=SanctionsSourceSettings.read(reader) if sanctions_source else None,
            reconcile=ReconcileSettings.read(reader) if reconcile else None,
        )
        reader.raise_if_incomplete(service)
        return settings

    def require_chain(self) -> ChainSettings:
        """The chain settings, for services built with `chain=True`."""
        return self._require(self.chain, "chain")

    def require_prices(self) -> PriceSettings:
        """The price settings, for services built with `prices=True`."""
        return self._require(self.prices, "price")

    def require_risk(self) -> RiskSettings:
        """The risk settings, for services built with `risk=True`."""
        return self._require(self.risk, "risk")

    def require_notify(self) -> NotifySettings:
        """The notify settings, for services built with `notify=True`."""
        return self._require(self.notify, "notify")

    def require_callbacks(self) -> CallbackSettings:
        """The callback settings, for services built with `callbacks=True`."""
        return self._require(self.callbacks, "callback")

    def require_compliance(self) -> ComplianceSettings:
        """The screening policy, for services built with `compliance=True`."""
        return self._require(self.compliance, "compliance")

    def require_sanctions_source(self) -> SanctionsSourceSettings:
        """The sanctions list source, for services built with `sanctions_source=True`."""
        return self._require(self.sanctions_source, "sanctions source")

    def require_reconcile(self) -> ReconcileSettings:
        """The reconciler's tuning, for services built with `reconcile=True`."""
        return self._require(self.reconcile, "reconcile")

    def _require(self, part, what: str):
        if part is None:
            raise ConfigurationError(f"{self.service}: {what} settings were not loaded")
        return part
