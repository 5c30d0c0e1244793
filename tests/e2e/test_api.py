"""The api function over real HTTP: registration and escrow queries, with every response checked
against the OpenAPI document. Escrows reach the database through settle, as in production."""

import json
import secrets

import pytest
import requests
import sqlalchemy
from eth_utils import to_checksum_address

from shared.stack.chain_driver import wait_for_equal
from tests.support.events import body, chain_event, new_escrow_id
from tests.support.openapi import assert_matches


@pytest.fixture(scope="module")
def api_url(stack):
    return f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"


def _address() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


@pytest.fixture(scope="module")
def escrow_world(stack, owner_engine):
    """Five escrows on one contract of their own, across three users, in known states and dates."""
    from tests.support.pubsub import Bus

    bus = Bus()
    contract, u1, u2, u3 = _address(), _address(), _address(), _address()
    plan = {  # name: (depositor, beneficiary, [(event type, date)])
        "e1": (u1, u2, [("EscrowCreated", "2026-01-01")]),
        "e2": (u2, u3, [("EscrowCreated", "2026-02-01"), ("EscrowApproved", "2026-02-05")]),
        "e3": (u1, u3, [("EscrowCreated", "2026-03-01"), ("EscrowRefunded", "2026-03-02")]),
        "e4": (u3, u1, [("EscrowCreated", "2026-04-01"), ("EscrowApproved", "2026-04-05"),
                        ("EscrowCompleted", "2026-04-10")]),
        "e5": (u1, u2, [("EscrowCreated", "2026-05-01")]),
    }
    ids = {}
    for block, (name, (depositor, beneficiary, steps)) in enumerate(plan.items(), start=1):
        ids[name] = new_escrow_id()
        for step, (event_type, day) in enumerate(steps):
            parties = {"depositor": depositor, "beneficiary": beneficiary} if event_type == "EscrowCreated" else {}
            document = chain_event(event_type, ids[name], block_number=block * 10 + step, contract=contract, **parties)
            document["occurred_at"] = f"{day}T12:00:00+00:00"
            bus.publish("settlement.events.v1", body(document))
    final = {"e1": "created", "e2": "approved", "e3": "refunded", "e4": "completed", "e5": "created"}

    def states():
        with owner_engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                "SELECT escrow_id, state FROM settlement.escrows WHERE contract = :c"), {"c": contract}).all()
        by_id = {str(row.escrow_id): row.state for row in rows}
        return {name: by_id.get(escrow_id) for name, escrow_id in ids.items()}

    wait_for_equal(states, final, "the five escrows in their final states", timeout=60)
    bus.close()
    return {"contract": contract, "users": (u1, u2, u3), "ids": ids}


def _names(world, items) -> list[str]:
    by_id = {escrow_id: name for name, escrow_id in world["ids"].items()}
    return [by_id[item["escrow_id"]] for item in items]


def _get(api_url, params):
    response = requests.get(f"{api_url}/escrows", params=params, timeout=10)
    assert_matches("/escrows", "get", response)
    return response


@pytest.mark.parametrize("params, expected", [
    ({}, ["e1", "e2", "e3", "e4", "e5"]),
    ({"user": "u1"}, ["e1", "e3", "e4", "e5"]),
    ({"user": "u3"}, ["e2", "e3", "e4"]),
    ({"status": "approved,completed"}, ["e2", "e4"]),
    ({"status": ["created", "refunded"]}, ["e1", "e3", "e5"]),
    ({"created_from": "2026-02-01T00:00:00+00:00", "created_to": "2026-04-01T00:00:00+00:00"}, ["e2", "e3"]),
    ({"updated_from": "2026-03-01T00:00:00+00:00"}, ["e3", "e4", "e5"]),
    ({"updated_to": "2026-02-02T00:00:00+00:00"}, ["e1"]),
    ({"user": "u1", "status": "created"}, ["e1", "e5"]),
    ({"user": "u1", "status": "refunded,completed", "created_from": "2026-03-01T00:00:00+00:00"}, ["e3", "e4"]),
    ({"user": "u2", "updated_from": "2026-02-01T00:00:00+00:00", "updated_to": "2026-06-01T00:00:00+00:00"},
     ["e2", "e5"]),
])
def test_escrow_filters_and_their_combinations(api_url, escrow_world, params, expected):
    users = dict(zip(("u1", "u2", "u3"), escrow_world["users"], strict=True))
    resolved = {k: users.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    response = _get(api_url, {"contract": escrow_world["contract"], **resolved})
    assert response.status_code == 200
    assert _names(escrow_world, response.json()["items"]) == expected


def test_filter_by_escrow_id_and_lower_case_contract(api_url, escrow_world):
    response = _get(api_url, {"contract": escrow_world["contract"].lower(), "escrow_id": escrow_world["ids"]["e4"]})
    assert _names(escrow_world, response.json()["items"]) == ["e4"]


def test_keyset_paging_visits_every_escrow_once(api_url, escrow_world):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"contract": escrow_world["contract"], "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = _get(api_url, params).json()
        seen += _names(escrow_world, page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["e1", "e2", "e3", "e4", "e5"]
    assert pages == 3


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "1000"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"status": "lost"}, "status"),
    ({"user": "0x1234"}, "user"),
    ({"contract": "escrow"}, "contract"),
    ({"escrow_id": "-1"}, "escrow_id"),
    ({"created_from": "yesterday"}, "created_from"),
    ({"updated_to": "2026-01-01T00:00:00"}, "updated_to"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_parameters_get_400_naming_the_parameter(api_url, params, field):
    response = _get(api_url, params)
    assert response.status_code == 400
    assert field in response.json()["problems"]


def test_escrow_detail_has_its_transition_history(api_url, escrow_world):
    key = f"31337:{escrow_world['contract']}:{escrow_world['ids']['e4']}"
    response = requests.get(f"{api_url}/escrows/{key}", timeout=10)
    assert_matches("/escrows/{id}", "get", response)
    detail = response.json()
    assert detail["state"] == "completed"
    assert [t["to_state"] for t in detail["transitions"]] == ["created", "approved", "completed"]
    missing = requests.get(f"{api_url}/escrows/31337:{escrow_world['contract']}:1", timeout=10)
    assert_matches("/escrows/{id}", "get", missing)
    assert missing.status_code == 404
    malformed = requests.get(f"{api_url}/escrows/not-a-key", timeout=10)
    assert_matches("/escrows/{id}", "get", malformed)
    assert malformed.status_code == 400


def _registration() -> dict:
    return {
        "name": "Grace Hopper",
        "date_of_birth": "1985-12-09",
        "country": "US",
        "email": f"grace-{secrets.token_hex(4)}@example.org",
        "phone": "+14155550100",
        "wallet_addresses": [_address()],
        "notification_channels": ["email", "sms"],
        "identity_document": {"type": "national_id", "number": "ID-998877", "issuing_country": "US",
                              "expires_on": "2032-03-31"},
    }


def test_registration_stores_the_user_and_publishes_users_registered(api_url, bus, owner_engine):
    subscription = bus.pull_subscription("users.registered.v1")
    registration = _registration()
    response = requests.post(f"{api_url}/users", json=registration, timeout=10)
    assert_matches("/users", "post", response)
    assert response.status_code == 201
    user = response.json()
    with owner_engine.connect() as conn:
        row = conn.execute(sqlalchemy.text("SELECT email, country, wallet_addresses FROM identity.users "
                                           "WHERE user_id = :u"), {"u": user["user_id"]}).first()
    assert (row.email, row.country, row.wallet_addresses) == (registration["email"], "US",
                                                              registration["wallet_addresses"])
    messages = bus.pull(subscription, until=lambda m: any(
        json.loads(x.data)["payload"]["user_id"] == user["user_id"] for x in m), settle=1.0)
    published = [json.loads(m.data) for m in messages if json.loads(m.data)["payload"]["user_id"] == user["user_id"]]
    assert len(published) == 1
    assert published[0]["event_type"] == "UserRegistered"
    assert published[0]["payload"]["email"] == registration["email"]

    fetched = requests.get(f"{api_url}/users/{user['user_id']}", timeout=10)
    assert_matches("/users/{user_id}", "get", fetched)
    assert {k: v for k, v in fetched.json().items() if k != "compliance_status"} == user
    assert fetched.json()["compliance_status"] in ("PENDING", "APPROVED")
    assert requests.get(f"{api_url}/users/nobody", timeout=10).status_code == 404


def test_invalid_registration_is_refused_and_nothing_is_stored(api_url, owner_engine):
    bad = {**_registration(), "country": "Narnia", "phone": "12345", "notification_channels": ["webhook"]}
    response = requests.post(f"{api_url}/users", json=bad, timeout=10)
    assert_matches("/users", "post", response)
    assert response.status_code == 400
    assert set(response.json()["problems"]) == {"country", "phone", "webhook_url"}
    with owner_engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM identity.users WHERE email = :e"),
                            {"e": bad["email"]}).scalar() == 0
    not_json = requests.post(f"{api_url}/users", data="name=x", timeout=10)
    assert not_json.status_code == 400


def test_an_email_registers_once(api_url):
    registration = _registration()
    assert requests.post(f"{api_url}/users", json=registration, timeout=10).status_code == 201
    again = requests.post(f"{api_url}/users", json={**registration, "email": registration["email"].upper()}, timeout=10)
    assert again.status_code == 400
    assert again.json()["problems"] == {"email": "is already registered"}
