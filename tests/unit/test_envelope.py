import json

import pytest

from shared.envelope import Envelope, derive_event_id
from shared.errors import InvalidEvent
from tests.support.events import golden


def test_golden_escrow_created_round_trips():
    document = golden("escrow_created")
    envelope = Envelope.from_json(document)
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    assert envelope.attributes()["event_type"] == "EscrowCreated"
    assert envelope.attributes()["correlation_id"] == document["correlation_id"]


def test_derived_event_id_is_stable_and_distinct_per_type():
    first = derive_event_id("31337:0xabc:0", "EscrowStateChanged")
    assert first == derive_event_id("31337:0xabc:0", "EscrowStateChanged")
    assert first != derive_event_id("31337:0xabc:0", "MarginCall")
    assert first != derive_event_id("31337:0xabc:1", "EscrowStateChanged")


def test_body_that_is_not_json_is_invalid():
    with pytest.raises(InvalidEvent, match="not JSON"):
        Envelope.from_bytes(b"\xff not json")


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d.pop("event_id"), "lacks event_id"),
        (lambda d: d.update(schema_version="1"), "schema_version must be an integer"),
        (lambda d: d.update(occurred_at="yesterday"), "not ISO-8601"),
        (lambda d: d.update(occurred_at="2026-11-20T12:00:00"), "UTC offset"),
        (lambda d: d.update(event_type="Nope"), "unknown event type"),
        (lambda d: d["payload"].update(amount=12), "payload.amount"),
        (lambda d: d["payload"].pop("depositor"), "payload.depositor is missing"),
        (lambda d: d["payload"].update(contract="0x123"), "payload.contract"),
        (lambda d: d["payload"].update(obligation_usd="NaN"), "payload.obligation_usd"),
    ],
)
def test_schema_violations_are_named(mutate, reason):
    document = golden("escrow_created")
    mutate(document)
    with pytest.raises(InvalidEvent, match=reason):
        Envelope.from_bytes(json.dumps(document).encode())


def test_invalid_event_keeps_the_event_id_when_it_can():
    document = golden("escrow_created")
    document["payload"]["amount"] = -1
    with pytest.raises(InvalidEvent) as raised:
        Envelope.from_json(document)
    assert raised.value.event_id == document["event_id"]
