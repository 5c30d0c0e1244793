"""A registration driven into a database error leaves none of its personal data in any log file.

The failing statement's parameters are the user's name, birth date, email, phone and wallet; the
database's own message can quote them too. Here a trigger makes the INSERT fail with a message that
quotes every one of them, the worst case: the api answers a problem, and no log line carries a value.
"""

import secrets
import uuid

import pytest
import requests
import sqlalchemy
from eth_utils import to_checksum_address

TRIGGER = """
CREATE FUNCTION identity.pii_canary_fails() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name LIKE 'Canary %' THEN
    RAISE EXCEPTION 'refused % % % % %', NEW.name, NEW.date_of_birth, NEW.email, NEW.phone, NEW.wallet_addresses;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER pii_canary BEFORE INSERT ON identity.users FOR EACH ROW EXECUTE FUNCTION identity.pii_canary_fails();
"""


@pytest.fixture
def failing_registrations(owner_engine):
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text(TRIGGER))
    yield
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP TRIGGER pii_canary ON identity.users; "
                                     "DROP FUNCTION identity.pii_canary_fails()"))


def test_a_failed_registration_logs_no_personal_data(stack, owner_engine, failing_registrations):
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    tag = uuid.uuid4().hex[:10]
    canary = {"name": f"Canary Xylophone{tag}", "date_of_birth": "1961-07-29", "email": f"canary-{tag}@example.org",
              "phone": f"+3120{secrets.randbelow(10**7):07d}",
              "wallet_addresses": [to_checksum_address("0x" + secrets.token_hex(20))]}
    reply = requests.post(f"{api}/users", timeout=10, json={
        **canary, "country": "NL", "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": f"NL{tag.upper()}", "issuing_country": "NL",
                              "expires_on": "2031-01-31"}})
    assert reply.status_code == 500 and reply.headers["content-type"].startswith("application/problem+json")
    with owner_engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM identity.users WHERE email = :e"),
                            {"e": canary["email"]}).scalar_one() == 0
    logs = {path.name: path.read_text(errors="replace") for path in stack.layout.logs.glob("*.log")}
    assert "unhandled error" in logs["api.log"]  # the failure itself is logged, with where it happened
    needles = [f"Xylophone{tag}", canary["date_of_birth"], canary["email"], canary["phone"],
               canary["wallet_addresses"][0], canary["wallet_addresses"][0].lower()]
    for needle in needles:
        leaking = [name for name, text in logs.items() if needle in text]
        assert leaking == [], f"{needle!r} appears in {leaking}"
