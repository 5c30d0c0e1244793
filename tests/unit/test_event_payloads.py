"""The payload schemas beyond EscrowCreated (tests/unit/test_envelope.py): what each refuses, how the refusal
reads, and what the canonical payload keeps."""

import copy

import pytest

from shared.errors import InvalidEvent
from shared.events import validate_payload

ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
MOMENT = "2026-11-20T12:00:00+00:00"
REGISTERED = {
    "user_id": "u-1", "name": "Ann Lee", "date_of_birth": "1980-05-05", "country": "NL", "email": "ann@example.org",
    "phone": "+31201234567", "wallet_addresses": [ADDRESS], "notification_channels": ["email"],
    "identity_document": {"type": "passport", "issuing_country": "NL", "expires_on": "2031-01-31",
                          "number_last4": "0001"},
}
PRICE = {
    "asset": "ETH", "token": ADDRESS, "price": "2000.5", "sequence": 3, "observed_at": MOMENT, "reason": "tick",
    "sources": [{"source": "coingecko", "price": "2000.5", "updated_at": MOMENT, "age_seconds": 3},
                {"source": "chainlink", "price": "2000.4", "round_id": "12", "updated_at": MOMENT, "age_seconds": 1.5}],
}
RESCREEN = {"snapshot_id": 1, "generation": 1, "shard": 0, "shards": 2, "key_from": 0, "key_to": 10}


def _changed(document: dict, change) -> dict:
    changed = copy.deepcopy(document)
    change(changed)
    return changed


@pytest.mark.parametrize("event_type, payload, reason", [
    # A float is a number: an integer is one, text and booleans are not, and neither is NaN or infinity.
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][0].update(age_seconds=True)),
     "payload.sources.0.age_seconds: Expected `float`, got `bool`"),
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][0].update(age_seconds="3")),
     "payload.sources.0.age_seconds: Expected `float`, got `str`"),
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][1].update(age_seconds=float("nan"))),
     "payload.sources.1.age_seconds: must be a finite number"),
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][1].update(age_seconds=float("-inf"))),
     "payload.sources.1.age_seconds: must be a finite number"),
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][1].update(source="oracle")),
     "payload.sources.1.source: must be one of"),
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][1].update(extra=1)),
     "payload.sources.1.extra: not a field of this event"),
    ("PriceUpdated", _changed(PRICE, lambda p: p["sources"][1].pop("updated_at")),
     "payload.sources.1.updated_at is missing"),
    ("PriceUpdated", _changed(PRICE, lambda p: p.update(sources=[])),
     "payload.sources: Expected `array` of length >= 1"),
    ("PriceUpdated", _changed(PRICE, lambda p: p.update(price="-1")), "payload.price: must be greater than zero"),
    # A pattern is the whole value: a final newline is not ignored.
    ("UserRegistered", _changed(REGISTERED, lambda p: p.update(country="NL\n")),
     "payload.country: Expected `str` matching"),
    ("UserRegistered", _changed(REGISTERED, lambda p: p.update(phone="+31201234567\n")),
     "payload.phone: Expected `str` matching"),
    ("UserRegistered", _changed(REGISTERED, lambda p: p["identity_document"].update(issuing_country="nl")),
     "payload.identity_document.issuing_country: Expected `str` matching"),
    ("UserRegistered", _changed(REGISTERED, lambda p: p.update(wallet_addresses=[ADDRESS, "0x12"])),
     "payload.wallet_addresses.1: must be a 20-byte hex address"),
    ("UserRegistered", _changed(REGISTERED, lambda p: p.update(wallet_addresses=[])),
     "payload.wallet_addresses: Expected `array` of length >= 1"),
    ("UserRegistered", _changed(REGISTERED, lambda p: p.update(user_id=7)),
     "payload.user_id: Expected `str`, got `int`"),
    ("UserRegistered", _changed(REGISTERED, lambda p: p.update(name="x" * 201)),
     "payload.name: Expected `str` of length <= 200"),
    ("UserRegistered", "not an object", "payload: Expected `object`, got `str`"),
    ("RescreenRequested", _changed(RESCREEN, lambda p: p.update(key_from=10)),
     "payload: needs key_from < key_to and shard < shards"),
    ("RescreenRequested", _changed(RESCREEN, lambda p: p.update(shard=2)),
     "payload: needs key_from < key_to and shard < shards"),
    ("RescreenRequested", _changed(RESCREEN, lambda p: p.update(shards=1.0)),
     "payload.shards: Expected `int`, got `float`"),
])
def test_a_refusal_names_the_field_and_the_rule(event_type, payload, reason):
    with pytest.raises(InvalidEvent) as refused:
        validate_payload(event_type, 1, payload, "e-1")
    assert f"{event_type} v1: {reason}" in str(refused.value)


def test_a_refusal_does_not_echo_a_value_that_is_not_one_of_the_allowed():
    secret = "sms to +31 6 1234 5678 please"
    with pytest.raises(InvalidEvent) as refused:
        validate_payload("UserRegistered", 1, _changed(REGISTERED, lambda p: p.update(notification_channels=[secret])),
                         "e-1")
    assert str(refused.value) == "UserRegistered v1: payload.notification_channels.0: Invalid enum value"


def test_the_canonical_payload_keeps_the_fields_given_and_no_others():
    # Left out: stays out (consumers assume the default). Given as null: stays null. Nested payloads alike.
    given = _changed(REGISTERED, lambda p: p.update(webhook_url=None, wallet_addresses=[ADDRESS.lower()]))
    canonical = validate_payload("UserRegistered", 1, given, "e-1")
    assert canonical == {**REGISTERED, "webhook_url": None}
    assert "jump_confirmed" not in validate_payload("PriceUpdated", 1, PRICE, "e-2")
    sources = validate_payload("PriceUpdated", 1, PRICE, "e-2")["sources"]
    assert sources == [{**PRICE["sources"][0], "age_seconds": 3.0}, PRICE["sources"][1]]
    assert "round_id" not in sources[0]
