"""Validation of a registration request (pure): every field checked, every problem reported."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

import pycountry

from shared.addresses import canonical_address
from shared.compliance.screening import DOCUMENT_TYPES
from shared.errors import InvalidRequest
from shared.events import MAX_NAME_LENGTH
from shared.notify.url_guard import url_problem

# The minimum age is a KYC rule (screen-compliance, COMPLIANCE_MIN_AGE): an under-age registration is
# stored and REJECTED with that reason, not refused here.
MAX_AGE_YEARS = 130
MAX_WALLETS = 10
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DOCUMENT_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{3,29}")
FIELDS = ("name", "date_of_birth", "country", "email", "phone", "wallet_addresses",
          "notification_channels", "webhook_url", "identity_document")
DOCUMENT_FIELDS = ("type", "number", "issuing_country", "expires_on")


class Channel(StrEnum):
    """The ways a user can be notified."""

    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class Registration:
    """A validated registration, normalised (checksummed wallets, upper-case country)."""

    name: str
    date_of_birth: date
    country: str
    email: str
    phone: str
    wallet_addresses: tuple[str, ...]
    notification_channels: tuple[Channel, ...]
    webhook_url: str | None
    document: IdentityDocument


@dataclass(frozen=True)
class IdentityDocument:
    """The identity document as registered; only `last4` of its number is ever stored."""

    type: str
    number: str
    issuing_country: str
    expires_on: date

    @property
    def last4(self) -> str:
        return self.number.replace(" ", "").replace("-", "")[-4:]


def _age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _check_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if len(value) > MAX_NAME_LENGTH or _CONTROL.search(value):
        return f"must be at most {MAX_NAME_LENGTH} characters with no control characters"
    return None


def _check_birth(value: Any, today: date) -> str | None:
    born = _parse_date(value)
    if born is None:
        return "must be a date as YYYY-MM-DD"
    if born > today:
        return "is in the future"
    if _age_on(born, today) > MAX_AGE_YEARS:
        return f"implies an age over {MAX_AGE_YEARS}"
    return None


def _parse_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


def _check_document(value: Any) -> dict[str, str]:
    """Problems of the identity document, keyed `identity_document.<field>`. An expired one is KYC's call."""
    if not isinstance(value, dict):
        return {"identity_document": f"must be an object with {', '.join(DOCUMENT_FIELDS)}"}
    problems = {
        "type": None if value.get("type") in DOCUMENT_TYPES else f"must be one of {', '.join(DOCUMENT_TYPES)}",
        "number": None if isinstance(value.get("number"), str) and _DOCUMENT_NUMBER.fullmatch(value["number"])
        else "must be 4 to 30 letters, digits, spaces or hyphens",
        "issuing_country": _check_country(value.get("issuing_country")),
        "expires_on": None if _parse_date(value.get("expires_on")) else "must be a date as YYYY-MM-DD",
    }
    for unknown in sorted(set(value) - set(DOCUMENT_FIELDS)):
        problems[unknown] = "is not a field of an identity document"
    return {f"identity_document.{name}": problem for name, problem in problems.items() if problem}


def _check_country(value: Any) -> str | None:
    if not isinstance(value, str) or pycountry.countries.get(alpha_2=value.upper()) is None or len(value) != 2:
        return "must be an ISO 3166-1 alpha-2 country code"
    return None


def _check_wallets(value: Any) -> str | None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_WALLETS:
        return f"must be a list of 1 to {MAX_WALLETS} addresses"
    canonical = []
    for index, address in enumerate(value):
        try:
            canonical.append(canonical_address(address))
        except ValueError as exc:
            return f"[{index}] {exc}"
    if len(set(canonical)) != len(canonical):
        return "lists an address twice"
    return None


def _check_channels(value: Any) -> str | None:
    known = {channel.value for channel in Channel}
    if not isinstance(value, list) or not value or not all(isinstance(channel, str) for channel in value):
        return f"must be a non-empty list drawn from {sorted(known)}"
    if any(channel not in known for channel in value) or len(set(value)) != len(value):
        return f"must list each of {sorted(known)} at most once"
    return None


def _check_webhook(value: Any, channels: Any) -> str | None:
    wants_webhook = isinstance(channels, list) and Channel.WEBHOOK.value in channels
    if value is None:
        return "is required for the webhook channel" if wants_webhook else None
    if not isinstance(value, str):
        return "must be a URL"
    # Loopback is admitted here for the local stack; notify refuses it at send unless WEBHOOK_ALLOW_LOOPBACK.
    return url_problem(value, allow_loopback=True)


def validate_registration(body: Any, today: date) -> Registration:
    """The registration in `body`, or InvalidRequest naming every field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    problems = {
        "name": _check_name(body.get("name")),
        "date_of_birth": _check_birth(body.get("date_of_birth"), today),
        "country": _check_country(body.get("country")),
        "email": None if isinstance(body.get("email"), str) and _EMAIL.fullmatch(body["email"])
        and len(body["email"]) <= 254 else "must be an email address",
        "phone": None if isinstance(body.get("phone"), str) and _E164.fullmatch(body["phone"])
        else "must be an E.164 phone number, like +14155550100",
        "wallet_addresses": _check_wallets(body.get("wallet_addresses")),
        "notification_channels": _check_channels(body.get("notification_channels")),
        "webhook_url": _check_webhook(body.get("webhook_url"), body.get("notification_channels")),
        **_check_document(body.get("identity_document")),
    }
    for unknown in sorted(set(body) - set(FIELDS)):
        problems[unknown] = "is not a field of a registration"
    found = {field: problem for field, problem in problems.items() if problem}
    if found:
        raise InvalidRequest(found)
    return Registration(
        name=body["name"].strip(),
        date_of_birth=date.fromisoformat(body["date_of_birth"]),
        country=body["country"].upper(),
        email=body["email"],
        phone=body["phone"],
        wallet_addresses=tuple(canonical_address(a) for a in body["wallet_addresses"]),
        notification_channels=tuple(Channel(c) for c in body["notification_channels"]),
        webhook_url=body.get("webhook_url"),
        document=IdentityDocument(
            type=body["identity_document"]["type"],
            number=body["identity_document"]["number"],
            issuing_country=body["identity_document"]["issuing_country"].upper(),
            expires_on=date.fromisoformat(body["identity_document"]["expires_on"]),
        ),
    )
