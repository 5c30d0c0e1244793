"""Hostile input at every consumer: one test per row of a table of bad messages, through the emulator
into the running functions.

Each row checks three things: nothing the message names was stored (its footprint in the consumer's
tables stays empty or unchanged), the rejection is recorded in `<schema>.rejected_messages` with its
reason, and the function still applies a genuine message afterwards.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy
from eth_utils import to_checksum_address

from shared.stack.chain_driver import wait_for
from tests.support.events import body, unique_escrow_created

# topic -> the consumers (name, schema) that receive it.
CONSUMERS = {
    "settlement.events.v1": [("settle", "settlement")],
    "compliance.results.v1": [("settle", "settlement")],
    "settlement.escrows.v1": [("assess-margin", "risk")],
    "market.prices.v1": [("assess-margin", "risk")],
    "users.registered.v1": [("notify", "notify"), ("screen-compliance", "compliance")],
    "risk.margin-events.v1": [("notify", "notify")],
    "compliance.reviews.v1": [("screen-compliance", "compliance")],
    "compliance.rescreen.v1": [("rescreen", "compliance")],
}
# Where a message would leave a trace, per topic: SQL counting rows keyed by what the message names.
FOOTPRINT = {
    "settlement.events.v1": ["SELECT count(*) FROM settlement.escrows WHERE escrow_id = CAST(:escrow_id AS numeric)"],
    "compliance.results.v1": ["SELECT count(*) FROM settlement.compliance_statuses WHERE user_id = :user_id"],
    "settlement.escrows.v1": ["SELECT count(*) FROM risk.positions WHERE escrow_id = CAST(:escrow_id AS numeric)"],
    "market.prices.v1": ["SELECT count(*) FROM risk.applied_prices WHERE price_event_id = :event_id"],
    "users.registered.v1": ["SELECT count(*) FROM notify.contacts WHERE user_id = :user_id",
                            "SELECT count(*) FROM compliance.subjects WHERE user_id = :user_id"],
    "risk.margin-events.v1": ["SELECT count(*) FROM notify.deliveries WHERE event_id = :event_id",
                              "SELECT count(*) FROM notify.unrouted_events WHERE event_id = :event_id"],
    "compliance.reviews.v1": ["SELECT count(*) FROM compliance.reviews WHERE review_id = :review_id"],
    # A shard's screenings name the list snapshot as their cause: the request's own trace is its inbox row.
    "compliance.rescreen.v1": ["SELECT count(*) FROM compliance.inbox WHERE consumer = 'rescreen' "
                               "AND event_id = :event_id AND outcome = 'applied'"],
}


def _address() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


def _bad_checksum(address: str) -> str:
    """The address with one letter's case flipped: mixed case that fails EIP-55."""
    for index, char in enumerate(address[2:], start=2):
        if char.isalpha():
            return address[:index] + char.swapcase() + address[index + 1:]
    raise AssertionError("an address with no letters")


def _envelope(event_type: str, payload: dict) -> dict:
    event_id = f"{event_type}:{uuid.uuid4().hex}"
    return {"event_id": event_id, "event_type": event_type, "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(), "correlation_id": event_id, "causation_id": None,
            "payload": payload}


def escrow_created() -> dict:
    return unique_escrow_created(_address())


def state_changed() -> dict:
    created = escrow_created()["payload"]
    return _envelope("EscrowStateChanged", {
        **{k: created[k] for k in ("chain_id", "contract", "escrow_id", "depositor", "beneficiary", "asset",
                                   "amount", "obligation_usd", "deadline", "block_number", "log_index")},
        "state": "created", "previous_state": None, "sequence": 1, "reverted": False})


def price(value: str = "2000") -> dict:
    now = datetime.now(UTC).isoformat()
    # A sequence far above any real one: were it applied, it would also block the genuine prices after it.
    return _envelope("PriceUpdated", {
        "asset": "ETH", "token": "0x0000000000000000000000000000000000000000", "price": value,
        "sequence": 2_000_000_000, "observed_at": now, "reason": "hostile test",
        "sources": [{"source": "chainlink", "price": value, "round_id": "1", "updated_at": now, "age_seconds": 1.0}]})


def registration() -> dict:
    return _envelope("UserRegistered", {
        "user_id": uuid.uuid4().hex, "name": "Hostile Input", "date_of_birth": "1980-01-01", "country": "NL",
        "email": f"hostile-{uuid.uuid4().hex[:8]}@example.org", "phone": "+31201234567",
        "wallet_addresses": [_address()], "notification_channels": ["email"], "webhook_url": None,
        "identity_document": {"type": "passport", "issuing_country": "NL", "expires_on": "2031-01-31",
                              "number_last4": "4567"}})


def margin_event() -> dict:
    return _envelope("MarginTierChanged", {
        "chain_id": 31337, "contract": _address(), "escrow_id": "7", "depositor": _address(), "asset": "ETH",
        "previous_tier": "WARNING", "tier": "MARGIN_CALL", "health_factor": "1.1", "price": "1500",
        "collateral_amount": "1", "obligation_usd": "1125", "price_event_id": "PriceUpdated:ETH:1",
        "snapshot_id": 1})


def review() -> dict:
    return _envelope("ComplianceReviewRequested", {
        "review_id": uuid.uuid4().hex, "user_id": uuid.uuid4().hex, "hit_id": 1, "action": "dismiss",
        "reviewer": "Hostile Reviewer", "note": None, "requested_at": datetime.now(UTC).isoformat()})


def rescreen_request() -> dict:
    # The whole key space in one shard: the users behind the newest snapshot (none, between tests).
    return _envelope("RescreenRequested", {"snapshot_id": 1, "generation": 1, "shard": 0, "shards": 1,
                                           "key_from": 0, "key_to": 65536})


def result() -> dict:
    return _envelope("ComplianceScreened", {
        "user_id": uuid.uuid4().hex, "decision": "APPROVED", "previous_decision": None, "sequence": 1, "score": 0,
        "reasons": [], "rejection": None, "screening_id": 1, "snapshot_id": 1, "trigger": "registration",
        "wallet_addresses": [_address()], "decided_at": datetime.now(UTC).isoformat()})


# A genuine message on these leaves no footprint of its own (an unknown wallet's alert is kept as
# unrouted; a review naming a hit its user does not have is refused with its reason, as here): the
# consumer's inbox shows it was taken and handled, not left to redelivery.
INBOX_ONLY = ("risk.margin-events.v1", "compliance.reviews.v1")
GENUINE = {"settlement.events.v1": escrow_created, "compliance.results.v1": result,
           "settlement.escrows.v1": state_changed, "market.prices.v1": None,
           "users.registered.v1": registration, "risk.margin-events.v1": margin_event,
           "compliance.reviews.v1": review, "compliance.rescreen.v1": rescreen_request}


@dataclass(frozen=True)
class Row:
    """One hostile message: the topic, how to build it from a genuine one, and the reason it must get."""

    name: str
    topic: str
    build: Callable[[], dict]
    spoil: Callable[[dict], object]  # changes the document in place, or returns raw bytes to send instead
    reason: str


def _payload(**changes) -> Callable[[dict], None]:
    return lambda document: document["payload"].update(changes)


def _flip(field: str) -> Callable[[dict], None]:
    return lambda document: document["payload"].update({field: _bad_checksum(document["payload"][field])})


ROWS = [
    # settle, on chain logs
    Row("negative obligation", "settlement.events.v1", escrow_created, _payload(obligation_usd="-1500"),
        "payload.obligation_usd"),
    Row("NaN obligation", "settlement.events.v1", escrow_created, _payload(obligation_usd="NaN"),
        "payload.obligation_usd"),
    Row("obligation that rounds up to 10^30", "settlement.events.v1", escrow_created,
        _payload(obligation_usd="9" * 30 + ".999999995"), "once rounded to 8"),
    Row("zero amount", "settlement.events.v1", escrow_created, _payload(amount="0"), "payload.amount"),
    Row("amount beyond uint256", "settlement.events.v1", escrow_created, _payload(amount=str(2**256)),
        "payload.amount"),
    Row("amount as a JSON number", "settlement.events.v1", escrow_created, _payload(amount=10**18),
        "payload.amount"),
    Row("Unicode digit escrow id", "settlement.events.v1", escrow_created, _payload(escrow_id="²"),
        "payload.escrow_id"),
    Row("chain id beyond BIGINT", "settlement.events.v1", escrow_created, _payload(chain_id=2**63),
        "payload.chain_id"),
    Row("deadline beyond year 9999", "settlement.events.v1", escrow_created, _payload(deadline=10**13),
        "payload.deadline"),
    Row("depositor with a broken checksum", "settlement.events.v1", escrow_created, _flip("depositor"), "EIP-55"),
    Row("contract with a broken checksum", "settlement.events.v1", escrow_created, _flip("contract"), "EIP-55"),
    Row("forged event id", "settlement.events.v1", escrow_created,
        lambda d: d.update(event_id=d["event_id"].upper()), "event_id of a chain log must be"),
    Row("extreme UTC offset", "settlement.events.v1", escrow_created,
        lambda d: d.update(occurred_at="0001-01-01T00:00:00+14:00"), "outside the years"),
    Row("NUL byte in the correlation id", "settlement.events.v1", escrow_created,
        lambda d: d.update(correlation_id="a\x00b"), "NUL byte"),
    Row("unpaired surrogate", "settlement.events.v1", escrow_created,
        lambda d: d.update(causation_id="\ud800"), "unpaired surrogate"),
    Row("deeply nested body", "settlement.events.v1", escrow_created,
        lambda d: b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    Row("body over 64 KiB", "settlement.events.v1", escrow_created,
        lambda d: d["payload"].update(padding="x" * 70_000), "exceeds"),
    Row("not JSON", "settlement.events.v1", escrow_created, lambda d: b"\xff\xfe not json", "not JSON"),
    # settle, on compliance results
    Row("score above 100", "compliance.results.v1", result, _payload(score=101), "payload.score"),
    Row("unknown decision", "compliance.results.v1", result, _payload(decision="MAYBE"), "payload.decision"),
    Row("result wallet with a broken checksum", "compliance.results.v1", result,
        lambda d: d["payload"].update(wallet_addresses=[_bad_checksum(_address())]), "EIP-55"),
    # assess-margin, on escrow state changes and prices
    Row("state change with a negative obligation", "settlement.escrows.v1", state_changed,
        _payload(obligation_usd="-1"), "payload.obligation_usd"),
    Row("state change with a negative sequence", "settlement.escrows.v1", state_changed, _payload(sequence=-1),
        "payload.sequence"),
    Row("negative price", "market.prices.v1", price, _payload(price="-1500"), "payload.price"),
    Row("zero price", "market.prices.v1", price, _payload(price="0"), "payload.price"),
    Row("infinite price", "market.prices.v1", price, _payload(price="Infinity"), "payload.price"),
    Row("price without provenance", "market.prices.v1", price, _payload(sources=[]), "payload.sources"),
    Row("price from an unknown source", "market.prices.v1", price,
        lambda d: d["payload"]["sources"][0].update(source="my-oracle"), "payload.sources.0.source"),
    Row("price that is not its sources' median", "market.prices.v1", price,
        lambda d: d["payload"]["sources"][0].update(price="1000"), "not the median"),
    Row("unconfirmed jump", "market.prices.v1", lambda: price("20000"), lambda d: None, "without confirmation"),
    Row("price for another token", "market.prices.v1", price, _payload(token=_address()), "names token"),
    # notify and screen-compliance, on registrations
    Row("name of 900 KB", "users.registered.v1", registration, _payload(name="x" * 900_000), "exceeds"),
    Row("name of 201 characters", "users.registered.v1", registration, _payload(name="x" * 201), "payload.name"),
    Row("non-hex wallet", "users.registered.v1", registration,
        _payload(wallet_addresses=["0x" + "zz" * 20]), "payload.wallet_addresses.0"),
    Row("wallet with a broken checksum", "users.registered.v1", registration,
        lambda d: d["payload"].update(wallet_addresses=[_bad_checksum(_address())]), "EIP-55"),
    Row("NUL byte in the email", "users.registered.v1", registration, _payload(email="a\x00@example.org"),
        "NUL byte"),
    Row("phone that is not E.164", "users.registered.v1", registration, _payload(phone="+1 555"), "payload.phone"),
    # notify, on margin events: a forged tier change naming a real user's wallet with a broken checksum
    Row("tier change for a wallet with a broken checksum", "risk.margin-events.v1", margin_event,
        _flip("depositor"), "EIP-55"),
    Row("negative health factor", "risk.margin-events.v1", margin_event, _payload(health_factor="-1"),
        "payload.health_factor"),
    # null is a price pass's change (no snapshot); anything but null or a database id is not
    Row("snapshot id zero", "risk.margin-events.v1", margin_event, _payload(snapshot_id=0), "payload.snapshot_id"),
    Row("snapshot id as text", "risk.margin-events.v1", margin_event, _payload(snapshot_id="1"),
        "payload.snapshot_id"),
    # screen-compliance, on reviews
    Row("hit id beyond BIGINT", "compliance.reviews.v1", review, _payload(hit_id=2**63), "payload.hit_id"),
    Row("unknown review action", "compliance.reviews.v1", review, _payload(action="approve"), "payload.action"),
    Row("reviewer of 201 characters", "compliance.reviews.v1", review, _payload(reviewer="r" * 201),
        "payload.reviewer"),
    # rescreen, on shard requests: a forged or garbled range must not rescreen anybody
    Row("reversed key range", "compliance.rescreen.v1", rescreen_request, _payload(key_from=10, key_to=5),
        "key_from < key_to"),
    Row("key beyond the key space", "compliance.rescreen.v1", rescreen_request, _payload(key_to=65537),
        "payload.key_to"),
    Row("shard not below the shard count", "compliance.rescreen.v1", rescreen_request, _payload(shard=1),
        "shard < shards"),
    Row("generation zero", "compliance.rescreen.v1", rescreen_request, _payload(generation=0), "payload.generation"),
    Row("key as text", "compliance.rescreen.v1", rescreen_request, _payload(key_from="0"), "payload.key_from"),
    Row("a registration on the rescreen topic", "compliance.rescreen.v1", registration, lambda d: None,
        "rescreen does not handle UserRegistered"),
]


def _keys(document: dict) -> dict:
    payload = document.get("payload", {})
    return {"event_id": document["event_id"], "escrow_id": str(payload.get("escrow_id", "0")),
            "user_id": str(payload.get("user_id", "")), "review_id": str(payload.get("review_id", ""))}


def _footprint(engine, topic: str, keys: dict) -> list[int]:
    with engine.connect() as conn:
        return [conn.execute(sqlalchemy.text(sql), keys).scalar_one() for sql in FOOTPRINT[topic]]


def _rejection(engine, schema: str, consumer: str, message_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            f"SELECT reason FROM {schema}.rejected_messages WHERE consumer = :c AND message_id = :m"),
            {"c": consumer, "m": message_id}).scalar_one_or_none()


def _genuine_applied(engine, bus, topic: str) -> None:
    """A genuine message on the same topic leaves its footprint: every consumer still serves."""
    build = GENUINE[topic]
    if build is None:  # prices: a genuine price is shown by the jump test below
        return
    document = build()
    bus.publish(topic, body(document))
    if topic in INBOX_ONLY:
        _wait_inbox(engine, topic, document["event_id"])
        return
    wait_for(lambda: all(_footprint(engine, topic, _keys(document))), f"a genuine {topic} message to apply")


def _wait_inbox(engine, topic: str, event_id: str) -> None:
    for consumer, schema in CONSUMERS[topic]:
        def seen(schema=schema, consumer=consumer):
            with engine.connect() as conn:
                return conn.execute(sqlalchemy.text(
                    f"SELECT outcome FROM {schema}.inbox WHERE consumer = :c AND event_id = :e"),
                    {"c": consumer, "e": event_id}).scalar_one_or_none()
        wait_for(seen, f"{consumer} to take a genuine {topic} message")


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_a_hostile_message_is_recorded_with_its_reason_and_changes_nothing(row, stack, bus, owner_engine, request):
    if row.topic == "market.prices.v1":
        request.getfixturevalue("market")  # a genuine price of 2000 applied first: the jump is measured from it
    document = row.build()
    keys = _keys(document)
    before = _footprint(owner_engine, row.topic, keys)
    spoilt = row.spoil(document)
    data = spoilt if isinstance(spoilt, bytes) else json.dumps(document).encode()
    message_id = bus.publish(row.topic, data)

    for consumer, schema in CONSUMERS[row.topic]:
        reason = wait_for(lambda c=consumer, s=schema: _rejection(owner_engine, s, c, message_id),
                          f"{consumer} to record the rejection")
        assert row.reason in reason, reason
    assert _footprint(owner_engine, row.topic, keys) == before
    _genuine_applied(owner_engine, bus, row.topic)


def test_a_refused_price_does_not_block_the_next_genuine_one(stack, bus, owner_engine, market):
    forged = price("-1500")
    message_id = bus.publish("market.prices.v1", body(forged))
    wait_for(lambda: _rejection(owner_engine, "risk", "assess-margin", message_id), "the forged price's rejection")
    market.settle_at("2100")  # waits until assess-margin applied fetch-price's next sequence
    with owner_engine.connect() as conn:
        applied = conn.execute(sqlalchemy.text(
            "SELECT price, sequence FROM risk.asset_prices WHERE asset_symbol = 'ETH'")).one()
    assert applied.price == 2100 and applied.sequence < 2_000_000_000


@pytest.mark.parametrize("url", ["https://127.0.0.1:99999/x", "https://[::127.0.0.1]/x", "https://u:p@example.org/x"])
def test_an_unusable_webhook_fails_its_delivery_with_the_reason_and_is_acknowledged(url, stack, bus, owner_engine):
    user = registration()
    user["payload"].update(notification_channels=["webhook"], webhook_url=url)
    bus.publish("users.registered.v1", body(user))
    wait_for(lambda: _footprint(owner_engine, "users.registered.v1", _keys(user))[0], "notify to learn the contact")
    event = margin_event()
    event["payload"]["depositor"] = user["payload"]["wallet_addresses"][0]
    bus.publish("risk.margin-events.v1", body(event))

    def failed():
        with owner_engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT status, reason FROM notify.deliveries WHERE event_id = :e AND channel = 'webhook' "
                "AND status = 'failed'"), {"e": event["event_id"]}).first()
    delivery = wait_for(failed, "the webhook delivery to fail")
    assert "refused by the SSRF guard" in delivery.reason
    with owner_engine.connect() as conn:
        outcome = conn.execute(sqlalchemy.text("SELECT outcome FROM notify.inbox WHERE event_id = :e"),
                               {"e": event["event_id"]}).scalar_one()
    assert outcome == "applied"


def test_spelling_variants_of_a_contract_make_no_second_escrow(stack, bus, owner_engine):
    original = escrow_created()
    contract = original["payload"]["contract"]
    bus.publish("settlement.events.v1", body(original))
    for spelling in (contract.lower(), "0x" + contract[2:].upper(), contract[2:].lower()):
        copy = json.loads(json.dumps(original))
        copy["payload"]["contract"] = spelling
        bus.publish("settlement.events.v1", body(copy))
    escrow = {"c": contract, "i": original["payload"]["escrow_id"]}

    def counts():
        with owner_engine.connect() as conn:
            return tuple(conn.execute(sqlalchemy.text(
                f"SELECT count(*) FROM {table} WHERE lower(contract) = lower(:c) AND escrow_id = CAST(:i AS numeric)"),
                escrow).scalar_one() for table in ("settlement.escrows", "risk.positions"))
    wait_for(lambda: counts() == (1, 1), "the escrow in settlement and risk")

    def duplicates_skipped():  # every copy reached settle and was dropped as the same event
        lines = (stack.layout.logs / "settle.log").read_text().splitlines()
        return sum(1 for line in lines if original["event_id"] in line and "duplicate delivery skipped" in line)
    wait_for(lambda: duplicates_skipped() == 3, "settle to drop the three copies")
    assert counts() == (1, 1)
    with owner_engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text(
            "SELECT contract FROM settlement.escrows WHERE lower(contract) = lower(:c) "
            "AND escrow_id = CAST(:i AS numeric)"), escrow).scalar_one()
    assert stored == contract  # checksummed, whatever spelling came first


def test_a_review_of_a_hit_the_user_does_not_have_is_refused_not_retried(stack, bus, owner_engine):
    """Only the api checks a review against the hits; a message naming another hit id must not loop."""
    forged = review()
    forged["payload"]["hit_id"] = 2**62  # exists nowhere
    message_id = bus.publish("compliance.reviews.v1", body(forged))
    reason = wait_for(lambda: _rejection(owner_engine, "compliance", "screen-compliance", message_id),
                      "screen-compliance to refuse the review")
    assert "which user" in reason and "does not have" in reason
    assert _footprint(owner_engine, "compliance.reviews.v1", _keys(forged)) == [0]
