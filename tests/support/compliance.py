"""Registering users and reading back what compliance decided, for the compliance tests."""

from __future__ import annotations

import functools
import json
import re
import secrets
from pathlib import Path

import requests
import sqlalchemy

from shared.compliance.lists import SCREENED_SDN_TYPE
from shared.compliance.names import ListedName, NameIndex
from shared.compliance.ofac import ADDRESS_LIST, OFAC_FILES, parse_lists
from shared.compliance.screening import ListView
from shared.compliance.settings import ComplianceSettings
from shared.stack.chain_driver import wait_for

# The real OFAC data the stack serves (shared/stack/data/ofac/README.md).
OFAC_DATA = Path(__file__).resolve().parents[2] / "shared" / "stack" / "data" / "ofac"


def real_lists():
    """The real SDN snapshot and ETH address list, parsed."""
    files = {name: (OFAC_DATA / filename.lower()).read_bytes() for name, filename in OFAC_FILES.items()}
    files[ADDRESS_LIST] = (OFAC_DATA / "sanctioned_addresses_ETH.txt").read_bytes()
    return parse_lists(files)


# The screening policy of the pure tests and benches (the stack's own is in shared/stack/stack.py).
SCREENING_POLICY = ComplianceSettings(
    min_age=18, prohibited_jurisdictions=frozenset({"KP", "IR"}), high_risk_jurisdictions=frozenset({"AF", "MM"}),
    name_review_threshold=0.92, name_report_threshold=0.85, aml_review_score=50)


@functools.cache
def real_list_view() -> ListView:
    """What screening reads of the real snapshot (as `read_list_view` builds it from the database)."""
    lists = real_lists()
    entries = {e["ent_num"]: e for e in lists.entries}
    names = [ListedName(n, None, e["name"]) for n, e in entries.items() if e["sdn_type"] == SCREENED_SDN_TYPE]
    names += [ListedName(a["ent_num"], a["alt_num"], a["name"]) for a in lists.aliases
              if entries[a["ent_num"]]["sdn_type"] == SCREENED_SDN_TYPE]
    return ListView(snapshot_id=1, wallets=lists.wallets, names=NameIndex(names), entries=entries)


def close_variant_of_a_listed_individual(lists) -> tuple[int, str]:
    """A real SDN individual's name, turned around ("LAST, First" → "First Last") with one letter dropped."""
    entry = next(e for e in lists.entries if e["ent_num"] == 6333)  # NASSER ARANA, Carlos Alberto
    last, first = entry["name"].split(", ")
    doubled = re.search(r"(\w)\1", last, re.IGNORECASE)
    assert doubled, "the chosen entry has a doubled letter to drop"
    variant = f"{first} {last[:doubled.start()] + last[doubled.start() + 1:]}".title()
    assert variant.upper() != f"{first} {last}".upper()
    return entry["ent_num"], variant


def random_wallet() -> str:
    return "0x" + secrets.token_hex(20)


def registration(name: str = "Ada Lovelace", **overrides) -> dict:
    """A valid registration body with a unique email, phone and wallet; override any field."""
    body = {
        "name": name,
        "date_of_birth": "1990-12-10",
        "country": "GB",
        "email": f"kyc-{secrets.token_hex(6)}@example.org",
        "phone": f"+44790{secrets.randbelow(10**7):07d}",
        "wallet_addresses": [random_wallet()],
        "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": f"P{secrets.randbelow(10**8):08d}",
                              "issuing_country": "GB", "expires_on": "2031-05-31"},
    }
    body.update(overrides)
    return body


def register(api_url: str, body: dict) -> dict:
    reply = requests.post(f"{api_url}/users", json=body, timeout=10)
    assert reply.status_code == 201, reply.text
    return reply.json()


def subject(engine, user_id: str):
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT * FROM compliance.subjects WHERE user_id = :u"),
                            {"u": user_id}).mappings().first()


def wait_decision(engine, user_id: str, expected: str | None = None, timeout: float = 30.0) -> dict:
    """The subject once screened (and, with `expected`, once its decision is that)."""
    def reached():
        row = subject(engine, user_id)
        return row if row and (expected is None or row["decision"] == expected) else None

    return dict(wait_for(reached, f"compliance decision {expected or ''} for {user_id}", timeout))


def results_for(messages: list, user_id: str) -> list[dict]:
    """The compliance.results.v1 envelopes about one user, in sequence order."""
    found = [json.loads(m.data) for m in messages]
    return sorted((e for e in found if e["payload"]["user_id"] == user_id), key=lambda e: e["payload"]["sequence"])


def compliance(api_url: str, user_id: str) -> dict:
    reply = requests.get(f"{api_url}/users/{user_id}/compliance", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()
