from datetime import date

import pytest

from shared.errors import InvalidRequest
from shared.identity.validation import validate_registration

TODAY = date(2026, 11, 26)
VALID = {
    "name": "Ada Lovelace",
    "date_of_birth": "1990-12-10",
    "country": "gb",
    "email": "ada@example.org",
    "phone": "+447700900123",
    "wallet_addresses": ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"],
    "notification_channels": ["email", "webhook"],
    "webhook_url": "https://hooks.example.org/escrow",
    "identity_document": {"type": "passport", "number": "533401872", "issuing_country": "gb",
                          "expires_on": "2030-04-30"},
}


def test_valid_registration_is_normalised():
    registration = validate_registration(VALID, TODAY)
    assert registration.country == "GB"
    assert registration.wallet_addresses == ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",)
    assert registration.document.issuing_country == "GB"
    assert registration.document.last4 == "1872"


def test_age_and_document_expiry_are_left_to_screening():
    """Under-age users and expired documents are KYC findings (REJECTED with a reason), not form errors."""
    body = {**VALID, "date_of_birth": "2012-01-01",
            "identity_document": {**VALID["identity_document"], "expires_on": "2020-01-01"}}
    assert validate_registration(body, TODAY).date_of_birth == date(2012, 1, 1)


@pytest.mark.parametrize("field, value, reason", [
    ("name", "", "non-empty"),
    ("name", "a\x00b", "control characters"),
    ("date_of_birth", "10/12/1990", "YYYY-MM-DD"),
    ("date_of_birth", "2027-01-01", "future"),
    ("date_of_birth", "1850-01-01", "over 130"),
    ("country", "XX", "ISO 3166-1"),
    ("country", "GBR", "ISO 3166-1"),
    ("email", "not-an-email", "email address"),
    ("phone", "07700 900123", "E.164"),
    ("wallet_addresses", [], "1 to 10"),
    ("wallet_addresses", ["0x1234"], "20-byte hex address"),
    ("wallet_addresses", ["0xZZ997970c51812dc3a010c7d01b50e0d17dc79c8"], "20-byte hex address"),
    ("wallet_addresses", ["0x70997970C51812dc3A010C7d01b50e0d17dc79c8"], "EIP-55"),
    ("wallet_addresses", ["0X70997970c51812dc3a010c7d01b50e0d17dc79c8"], "20-byte hex address"),
    ("wallet_addresses", ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"] * 2, "twice"),
    ("notification_channels", [], "non-empty"),
    ("notification_channels", ["email", "pager"], "at most once"),
    ("notification_channels", [{}], "non-empty list"),  # found by schemathesis: was a 500
    ("webhook_url", None, "required for the webhook channel"),
    ("webhook_url", "http://hooks.example.org/x", "https"),
    ("webhook_url", "ftp://hooks.example.org/x", "https URL"),
    ("webhook_url", "https://user:secret@hooks.example.org/x", "credentials"),
    ("webhook_url", "https://127.0.0.1:99999/x", "not a valid URL"),
    ("webhook_url", "https://[::1/x", "not a valid URL"),
    ("webhook_url", "https://[::127.0.0.1]/x", "non-public"),
    ("webhook_url", "https://[64:ff9b::a9fe:a9fe]/x", "non-public"),
    ("webhook_url", "https://[2002:a9fe:a9fe::]/x", "non-public"),
    ("webhook_url", "https://[fd00::1]/x", "non-public"),
    ("webhook_url", "https://169.254.169.254/x", "non-public"),
    ("email", "ada\x00@example.org", "email address"),
    ("email", "ada@example.org\n", "email address"),
    ("phone", "+447700900123\n", "E.164"),
    ("name", "x" * 900_000, "at most 200"),
])
def test_each_invalid_field_is_named(field, value, reason):
    body = {**VALID, field: value}
    with pytest.raises(InvalidRequest) as raised:
        validate_registration(body, TODAY)
    assert set(raised.value.problems) == {field}
    assert reason in raised.value.problems[field]


@pytest.mark.parametrize("field, value, reason", [
    ("type", "library_card", "one of passport"),
    ("number", "12", "4 to 30"),
    ("number", "AB<<1234", "4 to 30"),
    ("issuing_country", "ZZ", "ISO 3166-1"),
    ("expires_on", "31/12/2030", "YYYY-MM-DD"),
    ("expires_on", "2030-02-30", "YYYY-MM-DD"),
    ("colour", "blue", "not a field"),
])
def test_each_invalid_document_field_is_named(field, value, reason):
    body = {**VALID, "identity_document": {**VALID["identity_document"], field: value}}
    with pytest.raises(InvalidRequest) as raised:
        validate_registration(body, TODAY)
    assert set(raised.value.problems) == {f"identity_document.{field}"}
    assert reason in raised.value.problems[f"identity_document.{field}"]


def test_a_missing_document_is_named():
    body = {key: value for key, value in VALID.items() if key != "identity_document"}
    with pytest.raises(InvalidRequest) as raised:
        validate_registration(body, TODAY)
    assert set(raised.value.problems) == {"identity_document"}


def test_every_problem_is_reported_at_once_including_unknown_fields():
    with pytest.raises(InvalidRequest) as raised:
        validate_registration({"name": "x", "shoe_size": 44}, TODAY)
    assert {"date_of_birth", "country", "email", "phone", "wallet_addresses", "notification_channels",
            "shoe_size"} <= set(raised.value.problems)


@pytest.mark.parametrize("spelling", [
    "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
    "0x70997970C51812DC3A010C7D01B50E0D17DC79C8",
    "70997970c51812dc3a010c7d01b50e0d17dc79c8",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0X70997970C51812DC3A010C7D01B50E0D17DC79C8",  # the whole string upper-cased
])
def test_every_eip55_valid_wallet_spelling_is_stored_checksummed(spelling):
    registration = validate_registration({**VALID, "wallet_addresses": [spelling]}, TODAY)
    assert registration.wallet_addresses == ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",)


def test_loopback_webhook_may_use_plain_http():
    assert validate_registration({**VALID, "webhook_url": "http://127.0.0.1:9000/hook"}, TODAY).webhook_url


def test_body_must_be_an_object():
    with pytest.raises(InvalidRequest, match="JSON object"):
        validate_registration(["not", "an", "object"], TODAY)
