"""The catalogue of event types and the one declaration of each payload version.

Each payload is a msgspec Struct: strict types (no "1" for 1, no true for 1), ranges that fit the
columns the consumers write, length limits on every string, and canonical forms for every key, so no
spelling variant of the same fact can become a second row:

- addresses are accepted in any EIP-55-valid form (checksummed, all lower or all upper case, with or
  without `0x`) and become checksummed; mixed case with a wrong checksum is refused;
- hashes become lower-case `0x` hex; uint256 values become decimal strings without leading zeros.

JSON numbers cannot carry uint256 safely, so on-chain amounts travel as decimal strings. Validation
returns the canonical payload, and consumers only ever see that.

Why msgspec, not pydantic (measured on this machine, fresh processes after functions-framework, pg8000 and
the publisher had loaded, 4 runs each): importing pydantic and declaring these models took 0.055-0.065 s,
and the first validation, which builds the model's validator, 0.024-0.032 s more, inside every function's
cold start; msgspec's import, the declarations and the first validation took 0.005-0.006 s. msgspec
reports the first problem of a payload, not all of them.
"""

from __future__ import annotations

import math
import re
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from shared.addresses import canonical_address
from shared.errors import InvalidEvent
from shared.pricing.quotes import PRICE_SOURCES

# Event types published on settlement.events.v1 by relay: one per escrow contract log.
ESCROW_CREATED = "EscrowCreated"
ESCROW_APPROVED = "EscrowApproved"
ESCROW_COMPLETED = "EscrowCompleted"
ESCROW_REFUNDED = "EscrowRefunded"
CHAIN_EVENT_TYPES = (ESCROW_CREATED, ESCROW_APPROVED, ESCROW_COMPLETED, ESCROW_REFUNDED)
# Published on users.registered.v1 by the api when a user registers.
USER_REGISTERED = "UserRegistered"
# Event types published on settlement.escrows.v1 by settle.
ESCROW_STATE_CHANGED = "EscrowStateChanged"
# Published on market.prices.v1 by fetch-price.
PRICE_UPDATED = "PriceUpdated"
# Published on risk.margin-events.v1 by assess-margin when a position changes tier.
MARGIN_TIER_CHANGED = "MarginTierChanged"
# A chain reorganisation erased an escrow that had been alerted on: the alerts are withdrawn.
MARGIN_ALERT_RETRACTED = "MarginAlertRetracted"
# Published on compliance.results.v1 by screen-compliance (and refresh-sanctions): a user's decision.
COMPLIANCE_SCREENED = "ComplianceScreened"
# Published on compliance.reviews.v1 by the api when a reviewer confirms or dismisses a REVIEW hit.
COMPLIANCE_REVIEW_REQUESTED = "ComplianceReviewRequested"
# Published on compliance.rescreen.v1 by refresh-sanctions: rescreen the users of one shard.
RESCREEN_REQUESTED = "RescreenRequested"
# The namespace of review ids (review_id): a fixed UUID, so an id is the same on every instance and run.
REVIEW_NAMESPACE = uuid.UUID("6f1d3c52-0a7e-4d4b-9b7e-2f6a1c9e8d41")


def user_registered_id(user_id: str) -> str:
    """The id of a user's UserRegistered event: one per user."""
    return f"{USER_REGISTERED}:{user_id}"


def compliance_result_id(user_id: str, sequence: int) -> str:
    """The id of a user's compliance result: one per user and result sequence."""
    return f"{COMPLIANCE_SCREENED}:{user_id}:{sequence}"


def review_id(user_id: str, hit_id: int, action: str, reviewer: str) -> str:
    """A review request's id: one per user, hit, action and reviewer, so a client's retry is the same request
    (a hit belongs to one screening; once decided, it takes no other review)."""
    return uuid.uuid5(REVIEW_NAMESPACE, "\x1f".join((user_id, str(hit_id), action, reviewer))).hex


def review_requested_id(review: str) -> str:
    """The id of a review request's event."""
    return f"{COMPLIANCE_REVIEW_REQUESTED}:{review}"

# Column ranges: BIGINT, INTEGER, NUMERIC(78, 0) (uint256) and NUMERIC(38, 8) (USD amounts).
MAX_BIGINT = 2**63 - 1
MAX_INTEGER = 2**31 - 1
MAX_UINT256 = 2**256 - 1
MAX_USD = Decimal(10) ** 30
# An obligation is stored as NUMERIC(38, 8): rounded half up to 8 places, as PostgreSQL rounds (the columns'
# scale is compared with this in tests/unit/test_envelope.py). The context holds any value below MAX_USD
# at those places (Python's default one holds 28 digits).
USD_DECIMAL_PLACES = 8
_USD_PLACES = Decimal(1).scaleb(-USD_DECIMAL_PLACES)
_USD_ROUNDING = Context(prec=80, rounding=ROUND_HALF_UP)
# The last second PostgreSQL and Python can both hold (9999-12-31T23:59:59Z), for on-chain deadlines.
MAX_EPOCH_SECONDS = 253_402_300_799
# Identifiers, names and free text: the longest any producer writes, with room to spare.
MAX_ID_LENGTH = 200
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 2000
MAX_URL_LENGTH = 2048

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,78}")


def _canonical_hash(value: Any) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise ValueError("must be a 32-byte 0x hex hash")
    return value.lower()


def _uint256(value: Any) -> str:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value) or int(value) > MAX_UINT256:
        raise ValueError("must be a uint256 as a decimal string of ASCII digits")
    return str(int(value))


def _positive_uint256(value: str) -> str:
    if int(value) == 0:
        raise ValueError("must be greater than zero")
    return value


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str) or not value.isascii() or len(value) > 80:
        raise ValueError("must be a decimal number as a string")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError("must be a decimal number as a string") from exc
    if not number.is_finite():
        raise ValueError("must be finite")
    return number


def _positive_usd(value: Any) -> str:
    number = _decimal(value)
    if not 0 < number < MAX_USD:
        raise ValueError(f"must be greater than zero and below {MAX_USD:.0E}")
    return value


def usd_as_stored(value: str | Decimal) -> Decimal:
    """An obligation below MAX_USD as its column holds it (see USD_DECIMAL_PLACES)."""
    return Decimal(value).quantize(_USD_PLACES, context=_USD_ROUNDING)


def _non_negative_usd(value: Any) -> str:
    """An obligation: checked as stored, so that one just below MAX_USD that rounds up to it is refused here,
    not by the column on every redelivery."""
    number = _decimal(value)
    if not 0 <= number < MAX_USD or usd_as_stored(number) >= MAX_USD:
        raise ValueError(f"must be at least zero and below {MAX_USD:.0E} once rounded to {USD_DECIMAL_PLACES} "
                         "decimal places, as stored")
    return value


def _non_negative_decimal(value: Any) -> str:
    if _decimal(value) < 0:
        raise ValueError("must not be negative")
    return value


def _ratio(value: Any) -> str:
    """A health factor: a non-negative decimal, or "Infinity" when nothing is owed."""
    return value if value == "Infinity" else _non_negative_decimal(value)


def _price_source(value: str) -> str:
    if value not in PRICE_SOURCES:
        raise ValueError(f"must be one of {', '.join(PRICE_SOURCES)}")
    return value


def timestamp(value: Any) -> str:
    """An ISO-8601 timestamp with a UTC offset that is also a valid moment in UTC; ValueError otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("must be an ISO-8601 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("must be an ISO-8601 timestamp") from exc
    if moment.utcoffset() is None:
        raise ValueError("must carry a UTC offset")
    try:
        moment.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError("is outside the years 1-9999 in UTC") from exc
    return value


def _date(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("must be a date as YYYY-MM-DD")
    date.fromisoformat(value)
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):  # Python's json reads NaN and Infinity
        raise ValueError("must be a finite number")
    return value


class Canonical:
    """Annotated metadata of a field whose value becomes its canonical form, or is refused: `steps` run in
    order, each taking the value its predecessor returned, and each raising ValueError with the reason."""

    def __init__(self, first: Callable[[Any], Any], *then: Callable[[Any], Any]) -> None:
        def steps(value: Any) -> Any:
            value = first(value)
            for step in then:
                value = step(value)
            return value

        self.normalise = steps if then else first


Address = Annotated[str, Canonical(canonical_address)]
Hash = Annotated[str, Canonical(_canonical_hash)]
Uint256 = Annotated[str, Canonical(_uint256)]
PositiveUint256 = Annotated[str, Canonical(_uint256, _positive_uint256)]
PositiveUsd = Annotated[str, Canonical(_positive_usd)]
NonNegativeUsd = Annotated[str, Canonical(_non_negative_usd)]
NonNegativeDecimal = Annotated[str, Canonical(_non_negative_decimal)]
Ratio = Annotated[str, Canonical(_ratio)]
Timestamp = Annotated[str, Canonical(timestamp)]
IsoDate = Annotated[str, Canonical(_date)]
ChainId = Annotated[int, Meta(ge=1, le=MAX_BIGINT)]
BlockNumber = Annotated[int, Meta(ge=0, le=MAX_BIGINT)]
SmallCount = Annotated[int, Meta(ge=0, le=MAX_INTEGER)]
DatabaseId = Annotated[int, Meta(ge=1, le=MAX_BIGINT)]
EpochSeconds = Annotated[int, Meta(ge=0, le=MAX_EPOCH_SECONDS)]
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]
Url = Annotated[str, Meta(min_length=1, max_length=MAX_URL_LENGTH)]
# msgspec searches a pattern (re.search): `\Z`, not `$`, which also matches before a final newline.
CountryCode = Annotated[str, Meta(pattern=r"^[A-Z]{2}\Z")]


def _canonical_of(annotation: Any) -> tuple[Canonical | None, bool]:
    """A field's Canonical metadata, on the field itself or on its list's items (then True); the field may
    also be optional."""
    if typing.get_origin(annotation) is Annotated:
        for extra in annotation.__metadata__:
            if isinstance(extra, Canonical):
                return extra, False
        annotation = typing.get_args(annotation)[0]
    for inner in typing.get_args(annotation):  # X | None, list[X]
        canonical, of_items = _canonical_of(inner)
        if canonical is not None:
            return canonical, of_items or typing.get_origin(annotation) is list
    return None, False


class Payload(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A payload: strict (see validate_payload), closed (an unknown field is an error), immutable.

    After msgspec has checked each field's type, `__post_init__` puts the fields annotated Canonical into
    their canonical form; a subclass adds its checks across fields by extending it. Each subclass repeats
    `frozen=True, kw_only=True`: msgspec applies kw_only class by class, and type checkers read frozen so.
    """

    # Per payload class: its Canonical fields, read from its annotations the first time one is built.
    _canonical_fields: ClassVar[dict[type, list[tuple[str, Canonical, bool]]]] = {}

    @classmethod
    def _fields_to_canonicalise(cls) -> list[tuple[str, Canonical, bool]]:
        fields = Payload._canonical_fields.get(cls)
        if fields is None:
            hints = typing.get_type_hints(cls, include_extras=True)
            fields = Payload._canonical_fields[cls] = [
                (name, canonical, of_items) for name in cls.__struct_fields__
                for canonical, of_items in [_canonical_of(hints[name])] if canonical is not None]
        return fields

    def __post_init__(self) -> None:
        location = ""  # of the value being put in canonical form: `field`, or `field.position` in a list
        try:
            for name, canonical, of_items in self._fields_to_canonicalise():
                value = getattr(self, name)
                if value is None:
                    continue
                location = name
                if not of_items:
                    force_setattr(self, name, canonical.normalise(value))
                    continue
                items = []
                for position, item in enumerate(value):
                    location = f"{name}.{position}"
                    items.append(canonical.normalise(item))
                force_setattr(self, name, items)
        except ValueError as exc:  # refused as `location: reason`, the form describe_error reads
            raise ValueError(f"{location}: {exc}") from None


class ChainLog(Payload, frozen=True, kw_only=True):
    """Where a contract log sits on chain; `removed` marks a log a reorganisation orphaned."""

    chain_id: ChainId
    contract: Address
    block_number: BlockNumber
    block_hash: Hash
    tx_hash: Hash
    log_index: SmallCount
    removed: bool


class EscrowTerms(Payload, frozen=True, kw_only=True):
    """An escrow's terms as created on chain. The contract refuses a zero deposit, not a zero obligation."""

    escrow_id: Uint256
    depositor: Address
    beneficiary: Address
    asset: Address
    amount: PositiveUint256
    obligation_usd: NonNegativeUsd
    deadline: EpochSeconds


class EscrowCreatedV1(EscrowTerms, frozen=True, kw_only=True):
    """EscrowCreated: the terms, and the ChainLog fields (a Struct has one base with fields)."""

    chain_id: ChainId
    contract: Address
    block_number: BlockNumber
    block_hash: Hash
    tx_hash: Hash
    log_index: SmallCount
    removed: bool


class EscrowApprovedV1(ChainLog, frozen=True, kw_only=True):
    """EscrowApproved."""

    escrow_id: Uint256
    approver: Address


class EscrowCompletedV1(ChainLog, frozen=True, kw_only=True):
    """EscrowCompleted."""

    escrow_id: Uint256
    beneficiary: Address
    amount: PositiveUint256


class EscrowRefundedV1(ChainLog, frozen=True, kw_only=True):
    """EscrowRefunded."""

    escrow_id: Uint256
    depositor: Address
    amount: PositiveUint256


class IdentityDocumentV1(Payload, frozen=True, kw_only=True):
    """The registered identity document; the number itself never leaves the API (last four only)."""

    type: Id
    issuing_country: CountryCode
    expires_on: IsoDate
    number_last4: Annotated[str, Meta(min_length=1, max_length=4)]


class UserRegisteredV1(Payload, frozen=True, kw_only=True):
    """UserRegistered."""

    user_id: Id
    name: Name
    date_of_birth: IsoDate
    country: CountryCode
    email: Annotated[str, Meta(min_length=3, max_length=254)]
    phone: Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}\Z")]
    wallet_addresses: Annotated[list[Address], Meta(min_length=1, max_length=10)]
    notification_channels: Annotated[list[Literal["email", "sms", "webhook"]], Meta(min_length=1, max_length=3)]
    webhook_url: Url | None = None
    identity_document: IdentityDocumentV1 | None = None


class EscrowStateChangedV1(EscrowTerms, frozen=True, kw_only=True):
    """EscrowStateChanged."""

    chain_id: ChainId
    contract: Address
    state: Id
    previous_state: Id | None = None
    sequence: SmallCount
    # True when the change undoes a log that a chain reorganisation orphaned.
    reverted: bool
    block_number: BlockNumber
    log_index: SmallCount


class PriceSourceV1(Payload, frozen=True, kw_only=True):
    """One fresh source behind a published price: its price, round (Chainlink), update time and age."""

    source: Annotated[str, Canonical(_price_source)]
    price: PositiveUsd
    round_id: Uint256 | None = None
    updated_at: Timestamp
    # Negative when the source's clock runs ahead of fetch-price's (anvil's, in tests, by days): judging
    # that is fetch-price's staleness rule, not the schema's.
    age_seconds: Annotated[float, Canonical(_finite)]


class PriceUpdatedV1(Payload, frozen=True, kw_only=True):
    """PriceUpdated."""

    asset: Id
    token: Address
    price: PositiveUsd
    # Per asset, one more for each published price: consumers ignore anything not newer.
    sequence: SmallCount
    observed_at: Timestamp
    reason: Text
    # Provenance: each fresh source that agreed on the price.
    sources: Annotated[list[PriceSourceV1], Meta(min_length=1, max_length=10)]
    # fetch-price's guard saw a jump beyond its bound and a second round confirmed it.
    jump_confirmed: bool = False


class MarginTierChangedV1(Payload, frozen=True, kw_only=True):
    """MarginTierChanged."""

    chain_id: ChainId
    contract: Address
    escrow_id: Uint256
    depositor: Address
    asset: Id
    previous_tier: Id
    tier: Id
    health_factor: Ratio
    price: PositiveUsd
    collateral_amount: NonNegativeDecimal
    obligation_usd: NonNegativeUsd
    price_event_id: Id
    # The snapshot an escrow's change took; null for a price pass's change, which the event alone records.
    snapshot_id: DatabaseId | None = None


class MarginAlertRetractedV1(Payload, frozen=True, kw_only=True):
    """MarginAlertRetracted: the escrow an alert was about no longer exists on the canonical chain."""

    chain_id: ChainId
    contract: Address
    escrow_id: Uint256
    depositor: Address
    # The tier the withdrawn alerts announced.
    retracted_tier: Id
    reason: Text


class ComplianceScreenedV1(Payload, frozen=True, kw_only=True):
    """ComplianceScreened."""

    user_id: Id
    decision: Literal["APPROVED", "REVIEW", "REJECTED"]
    previous_decision: Literal["APPROVED", "REVIEW", "REJECTED"] | None = None
    # Per user, one more for each result: consumers ignore a result not newer than theirs.
    sequence: SmallCount
    score: Annotated[int, Meta(ge=0, le=100)]
    reasons: Annotated[list[Id], Meta(max_length=100)] | None = None
    # For REJECTED: "retry" (the user can put it right, e.g. an expired document) or "final".
    rejection: Literal["retry", "final"] | None = None
    screening_id: DatabaseId
    snapshot_id: DatabaseId
    trigger: Id
    # The user's wallets: settle holds escrows that involve them while the decision is not APPROVED.
    wallet_addresses: Annotated[list[Address], Meta(max_length=10)]
    decided_at: Timestamp


class ComplianceReviewRequestedV1(Payload, frozen=True, kw_only=True):
    """ComplianceReviewRequested."""

    review_id: Id
    user_id: Id
    hit_id: DatabaseId
    action: Literal["confirm", "dismiss"]
    reviewer: Name
    note: Text | None = None
    requested_at: Timestamp


class RescreenRequestedV1(Payload, frozen=True, kw_only=True):
    """RescreenRequested: the users whose rescreen key is in [key_from, key_to), behind `snapshot_id`."""

    snapshot_id: DatabaseId
    generation: Annotated[int, Meta(ge=1, le=MAX_INTEGER)]
    shard: Annotated[int, Meta(ge=0, le=MAX_INTEGER)]
    shards: Annotated[int, Meta(ge=1, le=MAX_INTEGER)]
    key_from: Annotated[int, Meta(ge=0, le=65535)]
    key_to: Annotated[int, Meta(ge=1, le=65536)]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.key_from >= self.key_to or self.shard >= self.shards:
            raise ValueError("needs key_from < key_to and shard < shards")


# Any one of relay's events: each names its escrow and where its log sits on chain.
EscrowLog = EscrowCreatedV1 | EscrowApprovedV1 | EscrowCompletedV1 | EscrowRefundedV1

PAYLOAD_MODELS: dict[tuple[str, int], type[Payload]] = {
    (ESCROW_CREATED, 1): EscrowCreatedV1,
    (ESCROW_APPROVED, 1): EscrowApprovedV1,
    (ESCROW_COMPLETED, 1): EscrowCompletedV1,
    (ESCROW_REFUNDED, 1): EscrowRefundedV1,
    (USER_REGISTERED, 1): UserRegisteredV1,
    (ESCROW_STATE_CHANGED, 1): EscrowStateChangedV1,
    (PRICE_UPDATED, 1): PriceUpdatedV1,
    (MARGIN_TIER_CHANGED, 1): MarginTierChangedV1,
    (MARGIN_ALERT_RETRACTED, 1): MarginAlertRetractedV1,
    (COMPLIANCE_SCREENED, 1): ComplianceScreenedV1,
    (COMPLIANCE_REVIEW_REQUESTED, 1): ComplianceReviewRequestedV1,
    (RESCREEN_REQUESTED, 1): RescreenRequestedV1,
}


# msgspec's message, and where it happened: "Expected `int`, got `str` - at `$.sources[0].round_id`".
_MSGSPEC_ERROR = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_FIELD_REASON = re.compile(r"(?P<field>[a-z_][a-z0-9_]*(?:\.[0-9]+)?): (?P<reason>.*)", re.DOTALL)  # Payload's own
_MISSING = re.compile(r"Object missing required field `(?P<field>.*)`", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>.*)`", re.DOTALL)


def describe_error(error: msgspec.ValidationError, prefix: str) -> str:
    """msgspec's error as `prefix.field.sub: message`, without echoing the input (msgspec quotes a value
    that is not one of a Literal's: that quote is dropped)."""
    found = _MSGSPEC_ERROR.fullmatch(str(error))
    assert found is not None  # the path is optional: any text matches
    location = prefix + re.sub(r"\[([0-9]+)\]", r".\1", found["path"] or "")
    message = found["message"]
    if missing := _MISSING.fullmatch(message):
        return f"{location}.{missing['field']} is missing"
    if unknown := _UNKNOWN.fullmatch(message):
        return f"{location}.{unknown['field']}: not a field of this event"
    if own := _FIELD_REASON.fullmatch(message):
        return f"{location}.{own['field']}: {own['reason']}"
    if message.startswith("Invalid enum value"):
        message = "Invalid enum value"
    return f"{location}: {message}"


def fields_as_given(validated: Payload, given: dict[str, Any]) -> dict[str, Any]:
    """A validated payload as JSON-ready canonical values, with the fields `given` had and no others: a
    field left out stays out (consumers assume its default), one given as null stays null."""
    return _as_given(msgspec.to_builtins(validated), given)


def _as_given(built: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    if len(built) != len(given):  # `given` names no field the payload lacks: it was validated
        built = {name: value for name, value in built.items() if name in given}
    for name, value in built.items():
        if isinstance(value, dict):
            built[name] = _as_given(value, given[name])
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            built[name] = [_as_given(item, given_item) for item, given_item in zip(value, given[name], strict=True)]
    return built


def validate_payload(event_type: str, version: int, payload: Any, event_id: str) -> dict[str, Any]:
    """The canonical form of `payload` under the model of (type, version); InvalidEvent naming its problem.

    Strict: no type is coerced into another (no "1" for 1, no 1 or true for each other), but for an integer
    where a float is declared.
    """
    model = PAYLOAD_MODELS.get((event_type, version))
    if model is None:
        raise InvalidEvent(f"unknown event type {event_type} v{version}", event_id=event_id)
    try:
        validated = msgspec.convert(payload, model, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"{event_type} v{version}: {describe_error(exc, 'payload')}", event_id=event_id) from exc
    return fields_as_given(validated, payload)
