"""Hostile requests at every route of the api and the callbacks: one test per row of a table.

Each row checks three things: the answer is a 4xx problem (`application/problem+json`) naming the field
where there is one, nothing was stored, and the function still answers a genuine request afterwards.
The reproducers of the poisoned connection pool have tests of their own.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid

import pytest
import requests
import sqlalchemy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_utils import to_checksum_address
from twilio.request_validator import RequestValidator

from tests.support.reviewers import ANALYST, MLRO, as_caller, forwarded_token

PROBLEM = "application/problem+json"
ESCROW = f"31337:{to_checksum_address('0x' + '5a' * 20)}"


def registration(**changes) -> dict:
    body = {"name": "Hostile Request", "date_of_birth": "1980-01-01", "country": "NL",
            "email": f"hostile-{uuid.uuid4().hex[:8]}@example.org", "phone": "+31201234567",
            "wallet_addresses": [to_checksum_address("0x" + secrets.token_hex(20))],
            "notification_channels": ["email"],
            "identity_document": {"type": "passport", "number": "NL1234567", "issuing_country": "NL",
                                  "expires_on": "2031-01-31"}}
    body.update(changes)
    return body


def _cursor(created_at: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, 31337, "0x" + "5a" * 20, "1"]).encode()).decode()


# (name, method, path, requests keyword arguments, status, the field the problem names or None)
API_ROWS = [
    ("Unicode digit limit", "GET", "/escrows", {"params": {"limit": "²"}}, 400, "limit"),
    ("limit of zero", "GET", "/escrows", {"params": {"limit": "0"}}, 400, "limit"),
    ("Unicode digit escrow id", "GET", "/escrows", {"params": {"escrow_id": "²"}}, 400, "escrow_id"),
    ("escrow id beyond uint256", "GET", "/escrows", {"params": {"escrow_id": str(2**256)}}, 400, "escrow_id"),
    ("extreme negative UTC offset", "GET", "/escrows", {"params": {"created_from": "0001-01-01T00:00:00+14:00"}},
     400, "created_from"),
    ("extreme positive UTC offset", "GET", "/escrows", {"params": {"updated_to": "9999-12-31T23:59:59-14:00"}},
     400, "updated_to"),
    ("timestamp without offset", "GET", "/escrows", {"params": {"created_to": "2026-01-01T00:00:00"}}, 400,
     "created_to"),
    ("cursor with an extreme date", "GET", "/escrows", {"params": {"cursor": _cursor("0001-01-01T00:00:00+14:00")}},
     400, "cursor"),
    ("cursor that is not base64 JSON", "GET", "/escrows", {"params": {"cursor": "%%%"}}, 400, "cursor"),
    ("NUL byte in a filter", "GET", "/escrows", {"params": {"user": "0x\x00"}}, 400, "user"),
    ("contract with a broken checksum", "GET", "/escrows",
     {"params": {"contract": "0x5fbdb2315678afecb367f032d93F642f64180aa3"}}, 400, "contract"),
    ("unknown filter", "GET", "/escrows", {"params": {"colour": "red"}}, 400, "colour"),
    ("Unicode digit in an escrow key", "GET", f"/escrows/{ESCROW}:²", {}, 400, "id"),
    ("chain id beyond BIGINT", "GET", f"/escrows/{2**63}:{ESCROW.split(':')[1]}:1", {}, 400, "id"),
    ("escrow id beyond uint256", "GET", f"/escrows/{ESCROW}:{2**256}", {}, 400, "id"),
    ("NUL byte in a user id", "GET", "/users/a%00b", {}, 400, "user_id"),
    ("newline in a user id", "GET", "/users/a%0Ab/compliance", {}, 404, None),
    ("unknown path", "GET", "/nowhere", {}, 404, None),
    ("wrong method", "DELETE", "/escrows", {}, 405, None),
    ("wrong method on users", "PUT", "/users", {}, 405, None),
    ("body that is not JSON", "POST", "/users", {"data": b"{not json", "headers": {"content-type":
                                                                                   "application/json"}}, 400, "body"),
    ("deeply nested JSON", "POST", "/users", {"data": b"[" * 30_000 + b"]" * 30_000}, 400, "body"),
    ("body over 64 KiB", "POST", "/users", {"json": registration(name="x" * 70_000)}, 413, None),
    ("NUL byte in the email", "POST", "/users", {"json": registration(email="a\x00b@example.org")}, 400, "email"),
    ("unpaired surrogate in the name", "POST", "/users",
     {"data": json.dumps(registration(name="\ud800")).encode()}, 400, "name"),
    ("NUL byte in the webhook URL", "POST", "/users",
     {"json": registration(notification_channels=["webhook"], webhook_url="https://a\x00.example.org/")}, 400,
     "webhook_url"),
    ("broken IPv6 webhook", "POST", "/users",
     {"json": registration(notification_channels=["webhook"], webhook_url="https://[::1/x")}, 400, "webhook_url"),
    ("webhook port out of range", "POST", "/users",
     {"json": registration(notification_channels=["webhook"], webhook_url="https://127.0.0.1:99999/x")}, 400,
     "webhook_url"),
    ("webhook with credentials", "POST", "/users",
     {"json": registration(notification_channels=["webhook"], webhook_url="https://u:p@hooks.example.org/")}, 400,
     "webhook_url"),
    ("NAT64 metadata webhook", "POST", "/users",
     {"json": registration(notification_channels=["webhook"], webhook_url="https://[64:ff9b::a9fe:a9fe]/")}, 400,
     "webhook_url"),
    ("wallet with a broken checksum", "POST", "/users",
     {"json": registration(wallet_addresses=["0x70997970C51812dc3A010C7d01b50e0d17dc79c9"])}, 400,
     "wallet_addresses"),
    ("channels that are objects", "POST", "/users", {"json": registration(notification_channels=[{}])}, 400,
     "notification_channels"),
    ("hit id beyond BIGINT", "POST", "/users/{user}/compliance/reviews",
     {"json": {"hit_id": 2**63, "action": "dismiss"}, "headers": as_caller(MLRO)}, 400, "hit_id"),
    ("someone else named as the reviewer", "POST", "/users/{user}/compliance/reviews",
     {"json": {"hit_id": 1, "action": "dismiss", "reviewer": MLRO}, "headers": as_caller(ANALYST)}, 400, "reviewer"),
    ("NUL byte in the note", "POST", "/users/{user}/compliance/reviews",
     {"json": {"hit_id": 1, "action": "dismiss", "note": "\x00"}, "headers": as_caller(MLRO)}, 400, "note"),
]


# A review as each kind of caller sends it: (name, headers, status, the refusal logged). None of them may
# stage a review, and the api answers a genuine request afterwards.
REVIEW = {"hit_id": 1, "action": "dismiss"}
CALLER_ROWS = [
    ("no identity", {}, 401, "unidentified"),
    ("a token that is not a JWT", {"Authorization": "Bearer not-a-token"}, 401,
     "unidentified"),
    ("a reviewer's token that has expired", as_caller(MLRO, exp=int(time.time()) - 3600), 401,
     "unidentified"),
    ("a reviewer's email Google has not verified", as_caller(MLRO, email_verified=False), 401,
     "unidentified"),
    ("a token without an email", as_caller(None), 401, "unidentified"),
    ("a token from another issuer", as_caller(MLRO, iss="https://issuer.example.org"), 401,
     "unidentified"),
    ("an operator who is not a reviewer", as_caller("oncall@example.org"), 403,
     "not_a_reviewer"),
    ("a look-alike of a reviewer's address", as_caller("MLRO@example.org.evil.example"), 403,
     "not_a_reviewer"),
    ("a reviewer named in Authorization beside someone else Cloud Run verified",
     {"X-Serverless-Authorization": f"Bearer {forwarded_token('oncall@example.org')}", **as_caller(MLRO)}, 403,
     "not_a_reviewer"),
    ("a reviewer named in Authorization beside a broken verified header",
     {"X-Serverless-Authorization": "Bearer junk", **as_caller(MLRO)}, 401, "unidentified"),
]


@pytest.fixture(scope="module")
def api(stack):
    return f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"


@pytest.fixture(scope="module")
def user(api):
    reply = requests.post(f"{api}/users", json=registration(), timeout=10)
    assert reply.status_code == 201, reply.text
    return reply.json()


def _stored(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sqlalchemy.text("SELECT count(*) FROM identity.users")).scalar_one(),
                conn.execute(sqlalchemy.text("SELECT count(*) FROM identity.outbox")).scalar_one())


def assert_problem(reply, status: int, field: str | None) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith(PROBLEM), reply.headers["content-type"]
    document = reply.json()
    assert document["status"] == status and document["title"]
    if field is not None:
        assert field in document["problems"], document
    return document


def serves_every_route(api: str, user: dict) -> None:
    """A genuine request to every route answers correctly."""
    user_id = user["user_id"]
    assert requests.get(f"{api}/escrows", params={"limit": "1"}, timeout=10).status_code == 200
    assert requests.get(f"{api}/escrows/{ESCROW}:1", timeout=10).status_code == 404
    got = requests.get(f"{api}/users/{user_id}", timeout=10)
    assert got.status_code == 200 and got.json()["user_id"] == user_id
    assert requests.get(f"{api}/users/{user_id}/portfolio", timeout=10).status_code == 200
    assert requests.get(f"{api}/users/{user_id}/notifications", timeout=10).status_code == 200
    assert requests.get(f"{api}/users/{user_id}/compliance", timeout=10).status_code in (200, 404)
    created = requests.post(f"{api}/users", json=registration(), timeout=10)
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("name, method, path, kwargs, status, field", API_ROWS, ids=[r[0] for r in API_ROWS])
def test_a_hostile_request_gets_a_problem_and_stores_nothing(name, method, path, kwargs, status, field, api, user,
                                                             owner_engine):
    before = _stored(owner_engine)
    reply = requests.request(method, api + path.format(user=user["user_id"]), timeout=10, **kwargs)
    document = assert_problem(reply, status, field)
    if status == 405:
        assert reply.headers["Allow"], document
    assert _stored(owner_engine) == before
    assert requests.get(f"{api}/escrows", params={"limit": "1"}, timeout=10).status_code == 200


def _refusals_logged(stack, refusal: str, user_id: str) -> int:
    """The api's log lines refusing a review of `user_id` to its caller for `refusal`."""
    found = 0
    for line in (stack.layout.logs / "api.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        found += (entry.get("message"), entry.get("refusal"), entry.get("user_id")) == (
            "compliance review refused to its caller", refusal, user_id)
    return found


@pytest.mark.parametrize("name, headers, status, logged", CALLER_ROWS, ids=[r[0] for r in CALLER_ROWS])
def test_a_review_from_anyone_but_a_verified_reviewer_is_refused_logged_and_stages_nothing(
        name, headers, status, logged, stack, api, user, owner_engine):
    before = _stored(owner_engine)
    seen = _refusals_logged(stack, logged, user["user_id"])
    reply = requests.post(f"{api}/users/{user['user_id']}/compliance/reviews", json=REVIEW, headers=headers, timeout=10)
    document = assert_problem(reply, status, None)
    assert document["detail"]
    if status == 401:
        assert reply.headers["WWW-Authenticate"].lower().startswith("bearer"), reply.headers
    assert _stored(owner_engine) == before
    assert _refusals_logged(stack, logged, user["user_id"]) == seen + 1
    serves_every_route(api, user)


def test_a_reviewer_may_not_decide_on_their_own_screening(stack, api, owner_engine):
    """The compliance analyst registered as a user: their own review is refused before any hit is looked at."""
    reply = requests.post(f"{api}/users", json=registration(email=ANALYST.upper()), timeout=10)
    if reply.json().get("problems", {}).get("email") == "is already registered":  # a kept stack's earlier run
        with owner_engine.connect() as conn:
            user_id = conn.execute(sqlalchemy.text("SELECT user_id FROM identity.users WHERE lower(email) = :e"),
                                   {"e": ANALYST}).scalar_one()
    else:
        assert reply.status_code == 201, reply.text
        user_id = reply.json()["user_id"]
    before = _stored(owner_engine)
    refused = requests.post(f"{api}/users/{user_id}/compliance/reviews", json=REVIEW, headers=as_caller(ANALYST),
                            timeout=10)
    assert "own screening" in assert_problem(refused, 403, None)["detail"]
    assert _stored(owner_engine) == before
    assert _refusals_logged(stack, "own_screening", user_id) >= 1


@pytest.mark.parametrize("reproducer", [
    {"created_from": "0001-01-01T00:00:00+14:00"},
    {"cursor": base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00+00:00", 31337, "0x" + "5a" * 19 + "\ud800",
                                                    "1"]).encode()).decode()},
], ids=["extreme-offset", "surrogate-in-cursor"])
def test_the_pool_poisoning_reproducer_leaves_every_route_serving(reproducer, api, user):
    for _ in range(2):
        assert_problem(requests.get(f"{api}/escrows", params=reproducer, timeout=10), 400, None)
    serves_every_route(api, user)


def test_an_unpaired_surrogate_in_a_name_leaves_every_route_serving(api, user):
    body = json.dumps(registration(name="Ada \ud800 Lovelace")).encode()
    for _ in range(2):
        assert_problem(requests.post(f"{api}/users", data=body, timeout=10,
                                     headers={"content-type": "application/json"}), 400, "name")
    serves_every_route(api, user)


def test_a_wallet_belongs_to_one_user(api, user, owner_engine):
    wallet = user["wallet_addresses"][0]
    before = _stored(owner_engine)
    for spelling in (wallet, wallet.lower(), "0x" + wallet[2:].upper()):
        reply = requests.post(f"{api}/users", json=registration(wallet_addresses=[spelling]), timeout=10)
        document = assert_problem(reply, 409, "wallet_addresses")
        assert wallet in document["detail"]
    assert _stored(owner_engine) == before


# ------------------------------------------------------------------ callbacks

def _sign_sendgrid(stack, body: str, timestamp: int) -> dict:
    key = serialization.load_pem_private_key(stack._sendgrid_event_key().read_bytes(), None)
    signed = key.sign((str(timestamp) + body).encode(), ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signed).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp), "content-type": "application/json"}


# (name, body, status, the field the problem names or None); every body is validly signed.
CALLBACK_ROWS = [
    ("not JSON", "{nope", 400, "body"),
    ("an object, not a list", json.dumps({"event": "delivered"}), 400, "body"),
    ("an empty list", "[]", 400, "body"),
    ("an event that is not an object", json.dumps(["delivered"]), 400, "[0]"),
    ("an event without its id", json.dumps([{"event": "delivered"}]), 400, "[0]"),
    ("a delivery id beyond BIGINT", json.dumps([{"event": "delivered", "sg_event_id": "x",
                                                 "delivery_id": str(2**63)}]), 400, "[0].delivery_id"),
    ("a delivery id in Unicode digits", json.dumps([{"event": "delivered", "sg_event_id": "x",
                                                     "delivery_id": "²"}]), 400, "[0].delivery_id"),
    ("a NUL byte in a field", json.dumps([{"event": "delivered", "sg_event_id": "x", "email": "a\x00"}]), 400,
     "[0].email"),
    ("deeply nested", "[" * 30_000 + "]" * 30_000, 400, "body"),
]


@pytest.fixture(scope="module")
def callbacks(stack):
    return stack.callbacks_url()


def _rejected_callbacks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT coalesce(sum(delivery_count), 0) FROM notify.rejected_messages WHERE consumer = 'callbacks'")
        ).scalar_one()


def _genuine_callback_is_applied(stack, callbacks: str) -> None:
    event = json.dumps([{"event": "processed", "sg_event_id": uuid.uuid4().hex, "email": "x@example.org"}])
    reply = requests.post(f"{callbacks}/sendgrid/events", data=event, timeout=10,
                          headers=_sign_sendgrid(stack, event, int(time.time())))
    assert reply.status_code == 200 and reply.json()["outcomes"] == ["recorded"], reply.text


@pytest.mark.parametrize("name, body, status, field", CALLBACK_ROWS, ids=[r[0] for r in CALLBACK_ROWS])
def test_a_malformed_signed_callback_gets_a_problem_and_is_recorded(name, body, status, field, stack, callbacks,
                                                                    owner_engine):
    before = _rejected_callbacks(owner_engine)
    reply = requests.post(f"{callbacks}/sendgrid/events", data=body.encode(), timeout=10,
                          headers=_sign_sendgrid(stack, body, int(time.time())))
    assert_problem(reply, status, field)
    assert _rejected_callbacks(owner_engine) == before + 1
    _genuine_callback_is_applied(stack, callbacks)


@pytest.mark.parametrize("age_seconds", [3600, -3600, 10 * 365 * 86400])
def test_a_signed_callback_outside_the_timestamp_window_is_refused(age_seconds, stack, callbacks, owner_engine):
    event_id = uuid.uuid4().hex
    event = json.dumps([{"event": "processed", "sg_event_id": event_id}])
    reply = requests.post(f"{callbacks}/sendgrid/events", data=event, timeout=10,
                          headers=_sign_sendgrid(stack, event, int(time.time()) - age_seconds))
    assert_problem(reply, 403, None)
    with owner_engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM notify.provider_events "
                                            "WHERE provider_event_id = :e"), {"e": event_id}).scalar_one() == 0
    _genuine_callback_is_applied(stack, callbacks)


def test_a_callback_of_one_provider_cannot_move_another_channels_delivery(stack, callbacks, owner_engine):
    """A SendGrid event naming an SMS delivery's id is recorded but moves nothing."""
    with owner_engine.begin() as conn:
        delivery_id = conn.execute(sqlalchemy.text(
            "INSERT INTO notify.deliveries (event_id, event_type, user_id, channel, recipient, status, "
            "correlation_id, payload) VALUES (:e, 'MarginTierChanged', 'hostile', 'sms', '+31201234567', 'sent', :e, "
            "'{}') RETURNING id"),
            {"e": f"hostile-{uuid.uuid4().hex}"}).scalar_one()
    event = json.dumps([{"event": "delivered", "sg_event_id": uuid.uuid4().hex, "delivery_id": str(delivery_id)}])
    reply = requests.post(f"{callbacks}/sendgrid/events", data=event, timeout=10,
                          headers=_sign_sendgrid(stack, event, int(time.time())))
    assert reply.status_code == 200 and reply.json()["outcomes"] == ["recorded"], reply.text
    with owner_engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT status FROM notify.deliveries WHERE id = :d"),
                            {"d": delivery_id}).scalar_one() == "sent"


def _sign_twilio(stack, form: dict) -> dict:
    callbacks = stack.topology.function("callbacks")
    env = stack.function_env(callbacks, stack.layout.read_state()["escrow_address"])
    signature = RequestValidator(env["TWILIO_AUTH_TOKEN"]).compute_signature(env["TWILIO_STATUS_CALLBACK_URL"], form)
    return {"X-Twilio-Signature": signature}


@pytest.mark.parametrize("name, form, field", [
    ("no MessageSid", {"MessageStatus": "delivered"}, "MessageSid"),
    ("a MessageStatus of 300 characters", {"MessageSid": "SM1", "MessageStatus": "d" * 300}, "MessageStatus"),
    ("a NUL byte in a field", {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+1\x00"}, "To"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_malformed_signed_twilio_callback_gets_a_problem_and_is_recorded(name, form, field, stack, callbacks,
                                                                           owner_engine):
    before = _rejected_callbacks(owner_engine)
    reply = requests.post(f"{callbacks}/twilio/status", data=form, timeout=10, headers=_sign_twilio(stack, form))
    assert_problem(reply, 400, field)
    assert _rejected_callbacks(owner_engine) == before + 1
    _genuine_callback_is_applied(stack, callbacks)


# ------------------------------------------------------------------ tick topics

@pytest.mark.parametrize("function", ["relay", "fetch-price", "refresh-sanctions"])
@pytest.mark.parametrize("data", [b"\xff\xfe\x00 not json", b"[" * 30_000 + b"]" * 30_000, b"x" * 100_000],
                         ids=["binary", "deeply-nested", "100-KB"])
def test_a_tick_with_any_content_is_just_a_tick(function, data, stack):
    """A tick's content is never read: whatever it carries, the function runs its tick and answers 2xx."""
    port = stack.layout.function_port(stack.topology, function)
    push = {"message": {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex,
                        "attributes": {"x": "\x00"}, "publishTime": "2026-01-01T00:00:00Z"},
            "subscription": f"projects/local/subscriptions/{function}-hostile"}
    reply = requests.post(f"http://127.0.0.1:{port}/", json=push, timeout=120)
    assert 200 <= reply.status_code < 300, reply.text
