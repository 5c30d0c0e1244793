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
        (lambda d: d.update(occurred_at="yesterday"), "ISO-8601"),
        (lambda d: d.update(occurred_at="0001-01-01T00:00:00+14:00"), "outside the years"),
        (lambda d: d.update(surprise=1), "unknown envelope fields surprise"),
        (lambda d: d.update(event_id="31337:0xABC:0"), "event_id of a chain log must be"),
        (lambda d: d["payload"].update(contract="0x5fbdb2315678afecb367f032d93F642f64180aa3"), "EIP-55"),
        (lambda d: d["payload"].update(depositor="0x70997970C51812dc3A010C7d01b50e0d17dc79c9"), "EIP-55"),
        (lambda d: d["payload"].update(obligation_usd="-1500"), "payload.obligation_usd"),
        (lambda d: d["payload"].update(obligation_usd="Infinity"), "payload.obligation_usd"),
        (lambda d: d["payload"].update(obligation_usd="1" + "0" * 31), "payload.obligation_usd"),
        # Below 10^30 as written, 10^30 once rounded to the column's places: the column would refuse it.
        (lambda d: d["payload"].update(obligation_usd="9" * 30 + ".999999995"), "once rounded to 8"),
        (lambda d: d["payload"].update(amount="0"), "payload.amount"),
        (lambda d: d["payload"].update(amount=str(2**256)), "payload.amount"),
        (lambda d: d["payload"].update(escrow_id="²"), "payload.escrow_id"),
        (lambda d: d["payload"].update(chain_id=2**63), "payload.chain_id"),
        (lambda d: d["payload"].update(log_index=True), "payload.log_index"),
        (lambda d: d["payload"].update(deadline=10**13), "payload.deadline"),
        (lambda d: d["payload"].update(extra="x"), "payload.extra"),
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


def test_every_eip55_valid_spelling_becomes_the_checksummed_address():
    for spelling in ("0x5fbdb2315678afecb367f032d93f642f64180aa3", "0x5FBDB2315678AFECB367F032D93F642F64180AA3",
                     "5fbdb2315678afecb367f032d93f642f64180aa3"):
        document = golden("escrow_created")
        document["payload"]["contract"] = spelling
        assert Envelope.from_json(document).payload["contract"] == "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize("body, reason", [
    (json.dumps({**golden("escrow_created"), "event_id": "31337:0x11\u0000:0"}).encode(), "NUL byte"),
    (json.dumps({**golden("escrow_created"), "causation_id": "\ud800"}).encode(), "unpaired surrogate"),
    (b"[" * 100_000 + b"]" * 100_000, "exceeds"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (json.dumps({"payload": "x" * 70_000}).encode(), "exceeds"),
])
def test_a_body_no_field_of_which_could_be_stored_is_refused_whole(body, reason):
    with pytest.raises(InvalidEvent, match=reason):
        Envelope.from_bytes(body)


def test_nesting_is_bounded_whatever_the_recursion_limit():
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # as some runtimes and test tools do: json.loads then parses any depth
    try:
        with pytest.raises(InvalidEvent, match="nested too deeply"):
            Envelope.from_bytes(b"[" * 40 + b"]" * 40)
    finally:
        sys.setrecursionlimit(limit)


def test_obligations_are_judged_as_their_columns_store_them():
    from decimal import Decimal

    from shared.events import USD_DECIMAL_PLACES, usd_as_stored
    from shared.risk import tables as risk_tables
    from shared.settlement import tables as settlement_tables

    # Every column holding one escrow's obligation (portfolio_exposures holds sums, unscaled).
    columns = [settlement_tables.escrows.c.obligation_usd, *(
        risk_tables.metadata.tables[f"risk.{name}"].c.obligation_usd
        for name in ("positions", "margin_health_snapshots", "margin_events"))]
    assert {column.type.scale for column in columns} == {USD_DECIMAL_PLACES}
    assert usd_as_stored("1234.567890125") == Decimal("1234.56789013")  # half up, as PostgreSQL rounds
    assert usd_as_stored("9" * 30 + ".999999994") < 10**30
