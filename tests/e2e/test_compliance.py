"""Compliance end to end: api → users.registered.v1 → screen-compliance → compliance.results.v1 → settle,
on the real OFAC data the local OFAC server publishes; refresh-sanctions rescreens after a list update."""

import json
import uuid

import pytest
import requests
import sqlalchemy
from eth_utils import to_checksum_address

from shared.compliance import ofac, refresh
from shared.compliance.lists import download_lists
from shared.compliance.names import rules_version
from shared.compliance.refresh import SanctionsRefresher
from shared.compliance.settings import ComplianceSettings, SanctionsSourceSettings
from shared.settings import Settings
from shared.stack.chain_driver import create_escrow, mine, new_funded_account, wait_for, wait_for_equal
from shared.stack.ofac_server import ADDRESS_LIST_NAME
from tests.support.compliance import (
    close_variant_of_a_listed_individual,
    compliance,
    real_lists,
    register,
    registration,
    results_for,
    subject,
    wait_decision,
)
from tests.support.openapi import assert_matches
from tests.support.reviewers import ANALYST, MLRO, as_caller

USD = 10**8


@pytest.fixture(scope="module")
def api_url(stack):
    return f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"


@pytest.fixture(scope="module")
def lists():
    return real_lists()


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql), params).scalar()


def test_onboarding_screens_the_user_and_publishes_the_result(api_url, bus, owner_engine):
    registered_sub = bus.pull_subscription("users.registered.v1")
    results_sub = bus.pull_subscription("compliance.results.v1")
    body = registration("Grace Brewster Hopper")
    user = register(api_url, body)
    user_id = user["user_id"]

    # The registration is stored and published.
    assert _count(owner_engine, "SELECT count(*) FROM identity.users WHERE user_id = :u", u=user_id) == 1
    [registered] = [e for e in map(lambda m: json.loads(m.data), bus.pull(
        registered_sub, until=lambda ms: any(user_id in m.data.decode() for m in ms)))
        if e["payload"]["user_id"] == user_id]
    # screen-compliance screened it, stored the run and the status, and published the result.
    screened = wait_decision(owner_engine, user_id, "APPROVED")
    assert screened["correlation_id"] == registered["correlation_id"]
    [result] = results_for(bus.pull(results_sub, until=lambda ms: results_for(ms, user_id), settle=1.0), user_id)
    assert result["event_type"] == "ComplianceScreened"
    assert result["correlation_id"] == registered["correlation_id"]
    assert result["causation_id"] == registered["event_id"]
    assert result["payload"] | {"decided_at": None} == {
        "user_id": user_id, "decision": "APPROVED", "previous_decision": None, "sequence": 1, "score": 0,
        "reasons": [], "rejection": None, "screening_id": screened["latest_screening_id"],
        "snapshot_id": screened["last_snapshot_id"],
        "trigger": "registration", "wallet_addresses": [to_checksum_address(body["wallet_addresses"][0])],
        "decided_at": None}

    history = requests.get(f"{api_url}/users/{user_id}/compliance", timeout=10)
    assert_matches("/users/{user_id}/compliance", "get", history)
    [run] = history.json()["screenings"]
    assert history.json()["status"] == "APPROVED"
    assert (run["trigger"], run["decision"], run["hits"]) == ("registration", "APPROVED", [])
    assert run["list_snapshot"]["counts"]["sdn"] == 8976
    assert run["list_snapshot"]["counts"]["eth_addresses"] >= 152
    fetched = requests.get(f"{api_url}/users/{user_id}", timeout=10)
    assert_matches("/users/{user_id}", "get", fetched)
    assert fetched.json()["compliance_status"] == "APPROVED"
    # settle recorded the decision (a user with no hold).
    wait_for(lambda: _count(owner_engine, "SELECT count(*) FROM settlement.compliance_statuses "
                                          "WHERE user_id = :u AND decision = 'APPROVED'", u=user_id),
             "settle to record the decision")
    # Compliance keeps only what screening needs: no email, phone or document number.
    kept = json.dumps(subject(owner_engine, user_id), default=str)
    assert body["email"] not in kept and body["phone"] not in kept
    assert body["identity_document"]["number"] not in kept


def test_a_real_sanctioned_wallet_is_rejected(api_url, owner_engine, lists):
    # A wallet belongs to one user: the first listed wallet nobody has registered yet (a kept stack reruns this).
    listed = next(w for w in sorted(lists.wallets) if not _count(
        owner_engine, "SELECT count(*) FROM identity.wallet_owners WHERE wallet = :w", w=w))
    # Registered in lower case: matching is exact after EIP-55 normalisation.
    user = register(api_url, registration("Rosalind Franklin", wallet_addresses=[listed.lower()]))
    screened = wait_decision(owner_engine, user["user_id"], "REJECTED")
    history = compliance(api_url, user["user_id"])
    [run] = history["screenings"]
    [wallet_hit] = [h for h in run["hits"] if h["check"] == "sanctions.wallet"]
    assert wallet_hit["evidence"]["wallet"] == listed
    assert wallet_hit["effect"] == "REJECTED"
    assert "sanctions.listed_wallet" in run["reasons"]
    assert screened["decision"] == "REJECTED" and run["score"] == 100
    assert (history["rejection"], run["rejection"]) == ("final", "final")


def test_a_close_match_of_a_real_sdn_name_goes_to_review_and_a_reviewer_decides(api_url, bus, owner_engine, lists):
    ent_num, name = close_variant_of_a_listed_individual(lists)
    results_sub = bus.pull_subscription("compliance.results.v1")
    user = register(api_url, registration(name, country="CO"))
    wait_decision(owner_engine, user["user_id"], "REVIEW")
    [run] = compliance(api_url, user["user_id"])["screenings"]
    [name_hit] = [h for h in run["hits"] if h["code"] == "sanctions.name_match"]
    assert (name_hit["list_entry"], name_hit["effect"], name_hit["review_status"]) == (ent_num, "REVIEW", "pending")
    assert float(name_hit["score"]) >= 0.92
    assert name_hit["evidence"]["sdn_type"] == "individual"

    # Bad review requests are refused with the reason; the body cannot name anyone but the caller as reviewer.
    bad = requests.post(f"{api_url}/users/{user['user_id']}/compliance/reviews", timeout=10, headers=as_caller(ANALYST),
                        json={"hit_id": name_hit["hit_id"], "action": "approve", "reviewer": MLRO})
    assert_matches("/users/{user_id}/compliance/reviews", "post", bad)
    assert set(bad.json()["problems"]) == {"action", "reviewer"}

    # The reviewer is whoever Cloud Run verified, here in X-Serverless-Authorization; the name the caller put
    # in Authorization (which Cloud Run then passes through unverified) is not taken.
    reply = requests.post(f"{api_url}/users/{user['user_id']}/compliance/reviews", timeout=10, json={
        "hit_id": name_hit["hit_id"], "action": "dismiss", "reviewer": ANALYST.upper(),
        "note": "date of birth and nationality differ from the SDN entry"},
        headers={"X-Serverless-Authorization": as_caller(ANALYST)["Authorization"], **as_caller(MLRO)})
    assert_matches("/users/{user_id}/compliance/reviews", "post", reply)
    assert reply.status_code == 202, reply.text
    assert reply.json()["reviewer"] == ANALYST
    wait_decision(owner_engine, user["user_id"], "APPROVED")
    history = compliance(api_url, user["user_id"])
    [review] = history["reviews"]
    assert (review["reviewer"], review["action"], review["outcome"]) == (ANALYST, "dismiss", "applied")
    assert review["requested_at"] and review["applied_at"]
    assert history["screenings"][0]["hits"][0]["review_status"] == "dismissed"
    results = results_for(bus.pull(results_sub, until=lambda ms: len(results_for(ms, user["user_id"])) >= 2),
                          user["user_id"])
    assert [(r["payload"]["decision"], r["payload"]["trigger"]) for r in results] == [
        ("REVIEW", "registration"), ("APPROVED", "review")]
    # The hit is decided: a second review is a conflict.
    again = requests.post(f"{api_url}/users/{user['user_id']}/compliance/reviews", timeout=10, headers=as_caller(MLRO),
                          json={"hit_id": name_hit["hit_id"], "action": "confirm"})
    assert_matches("/users/{user_id}/compliance/reviews", "post", again)
    assert again.status_code == 409


def test_a_confirmed_name_match_rejects_the_user(api_url, owner_engine, lists):
    _, name = close_variant_of_a_listed_individual(lists)
    user = register(api_url, registration(name))
    wait_decision(owner_engine, user["user_id"], "REVIEW")
    [hit] = [h for h in compliance(api_url, user["user_id"])["screenings"][0]["hits"]
             if h["code"] == "sanctions.name_match"]
    reply = requests.post(f"{api_url}/users/{user['user_id']}/compliance/reviews", timeout=10, headers=as_caller(MLRO),
                          json={"hit_id": hit["hit_id"], "action": "confirm"})
    assert reply.status_code == 202
    wait_decision(owner_engine, user["user_id"], "REJECTED")
    history = compliance(api_url, user["user_id"])
    assert (history["status"], history["reasons"], history["rejection"]) == (
        "REJECTED", ["sanctions.name_match"], "final")
    # The run itself stays as it was screened: REVIEW.
    assert history["screenings"][0]["decision"] == "REVIEW"


def test_a_clean_user_is_approved(api_url, owner_engine):
    user = register(api_url, registration("Tobias Wexler-Lindqvist", country="SE"))
    wait_decision(owner_engine, user["user_id"], "APPROVED")
    assert compliance(api_url, user["user_id"])["screenings"][0]["reasons"] == []


@pytest.mark.parametrize("overrides, reason, rejection", [
    ({"date_of_birth": "2012-06-01"}, "kyc.under_minimum_age", "retry"),
    ({"identity_document": {"type": "passport", "number": "X9876543", "issuing_country": "GB",
                            "expires_on": "2021-01-31"}}, "kyc.document_expired", "retry"),
    ({"country": "KP"}, "kyc.prohibited_jurisdiction", "final"),
])
def test_kyc_findings_reject_with_their_reason(api_url, owner_engine, overrides, reason, rejection):
    user = register(api_url, registration("Linus Pauling", **overrides))
    wait_decision(owner_engine, user["user_id"], "REJECTED")
    [run] = compliance(api_url, user["user_id"])["screenings"]
    assert reason in run["reasons"]
    assert run["rejection"] == rejection
    [hit] = [h for h in run["hits"] if h["code"] == reason]
    if reason == "kyc.under_minimum_age":
        assert hit["evidence"]["minimum_age"] == 18 and hit["evidence"]["age"] < 18


def test_a_duplicate_registration_event_screens_once(stack, bus, api_url, owner_engine):
    user = register(api_url, registration("Dorothy Hodgkin"))
    wait_decision(owner_engine, user["user_id"])
    event_id = f"UserRegistered:{user['user_id']}"
    with owner_engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text("SELECT envelope FROM identity.outbox WHERE event_id = :e"),
                              {"e": event_id}).scalar()
    bus.publish("users.registered.v1", json.dumps(stored).encode())
    wait_for(lambda: _count(owner_engine, "SELECT count(*) FROM compliance.inbox WHERE event_id = :e",
                            e=event_id), "the inbox to have the event")
    # The redelivery reached the consumer (a second, duplicate outcome is logged, nothing stored).
    wait_for(lambda: _count_log_lines(stack, "screen-compliance.log", "duplicate delivery skipped", event_id),
             "screen-compliance to skip the duplicate")
    assert _count(owner_engine, "SELECT count(*) FROM compliance.screenings WHERE user_id = :u",
                  u=user["user_id"]) == 1


def _count_log_lines(stack, log_name: str, message: str, event_id: str) -> int:
    text = (stack.layout.logs / log_name).read_text(errors="replace")
    return sum(1 for line in text.splitlines() if message in line and event_id in line)


def test_bad_registrations_get_a_clear_error_and_nothing_is_stored(api_url, owner_engine):
    body = registration("Barbara McClintock", date_of_birth="1990-02-30", wallet_addresses=["0x12345"])
    del body["identity_document"]
    del body["country"]
    reply = requests.post(f"{api_url}/users", json=body, timeout=10)
    assert_matches("/users", "post", reply)
    assert reply.status_code == 400
    assert reply.json()["problems"] == {
        "date_of_birth": "must be a date as YYYY-MM-DD",
        "country": "must be an ISO 3166-1 alpha-2 country code",
        "wallet_addresses": "[0] must be a 20-byte hex address",
        "identity_document": "must be an object with type, number, issuing_country, expires_on"}
    document = registration("Barbara McClintock")
    document["identity_document"]["expires_on"] = "next year"
    bad_document = requests.post(f"{api_url}/users", json=document, timeout=10)
    assert bad_document.json()["problems"] == {"identity_document.expires_on": "must be a date as YYYY-MM-DD"}
    for email in (body["email"], document["email"]):
        assert _count(owner_engine, "SELECT count(*) FROM identity.users WHERE email = :e", e=email) == 0
        assert _count(owner_engine, "SELECT count(*) FROM identity.outbox "
                                    "WHERE envelope->'payload'->>'email' = :e", e=email) == 0
    missing = requests.get(f"{api_url}/users/nobody/compliance", timeout=10)
    assert_matches("/users/{user_id}/compliance", "get", missing)
    assert missing.status_code == 404


def test_a_list_update_rescreens_holds_the_escrow_and_keeps_every_run(stack, api_url, bus, owner_engine,
                                                                     isolated_relay, lists):
    """The address list gains a registered user's wallet: rescreened REJECTED, escrow held; removed again:
    APPROVED, hold lifted. Three runs in the history, each with its list snapshot. A name match a
    reviewer dismissed stays dismissed through the rescreens."""
    _, near_name = close_variant_of_a_listed_individual(lists)
    reviewed = register(api_url, registration(near_name))
    wait_decision(owner_engine, reviewed["user_id"], "REVIEW")
    [name_hit] = [h for h in compliance(api_url, reviewed["user_id"])["screenings"][0]["hits"]
                  if h["code"] == "sanctions.name_match"]
    assert requests.post(f"{api_url}/users/{reviewed['user_id']}/compliance/reviews", timeout=10,
                         headers=as_caller(ANALYST), json={"hit_id": name_hit["hit_id"], "action": "dismiss"}
                         ).status_code == 202
    wait_decision(owner_engine, reviewed["user_id"], "APPROVED")
    relay = isolated_relay()
    w3 = stack.web3()
    wallet = new_funded_account(w3)
    user = register(api_url, registration("Chien-Shiung Wu", country="US", wallet_addresses=[wallet]))
    first = wait_decision(owner_engine, user["user_id"], "APPROVED")
    escrow = create_escrow(w3, relay.contract, wallet, w3.eth.accounts[2], 10**18, 1000 * USD)
    mine(w3, 2)
    relay.wait_caught_up(owner_engine)
    escrow_key = f"31337:{relay.contract.address}:{escrow.escrow_id}"

    def hold():
        reply = requests.get(f"{api_url}/escrows/{escrow_key}", timeout=10)
        assert_matches("/escrows/{id}", "get", reply)
        return reply.json()["compliance_hold"] if reply.status_code == 200 else "missing"

    wait_for_equal(hold, None, "the escrow, not held")
    results_sub = bus.pull_subscription("compliance.results.v1")
    address_list = stack.layout.ofac_dir / ADDRESS_LIST_NAME
    original = address_list.read_text()
    try:
        address_list.write_text(original + wallet.lower() + "\n")
        listed_snapshot = stack.refresh_sanctions()
        assert listed_snapshot > first["last_snapshot_id"]
        wait_decision(owner_engine, user["user_id"], "REJECTED")
        [result] = results_for(bus.pull(results_sub, until=lambda ms: results_for(ms, user["user_id"])),
                               user["user_id"])
        assert (result["payload"]["decision"], result["payload"]["previous_decision"],
                result["payload"]["trigger"], result["payload"]["sequence"]) == ("REJECTED", "APPROVED", "rescreen", 2)
        assert result["correlation_id"] == first["correlation_id"]
        # Caused by the shard request that carried the rescreen: a copy of that request delivered again
        # finds the results its first delivery staged (and waits while they are leased to it).
        assert result["causation_id"].startswith(f"RescreenRequested:{listed_snapshot}:")
        held = wait_for(lambda: hold() or None, "settle to hold the escrow")
        # The dismissed name match was found again and carried the reviewer's decision.
        carried = wait_for(lambda: (lambda h: h if len(h["screenings"]) == 2 else None)(
            compliance(api_url, reviewed["user_id"])), "the reviewed user's rescreen")
        assert carried["status"] == "APPROVED"
        assert [(r["trigger"], [h["review_status"] for h in r["hits"] if h["code"] == "sanctions.name_match"])
                for r in carried["screenings"]] == [("rescreen", ["dismissed"]), ("registration", ["dismissed"])]
        assert (held["decision"], held["held_parties"]) == ("REJECTED", ["depositor"])
        listed = requests.get(f"{api_url}/escrows", params={"user": wallet}, timeout=10).json()["items"]
        assert [e["compliance_hold"]["decision"] for e in listed] == ["REJECTED"]
    finally:
        address_list.write_text(original)
    stack.refresh_sanctions()
    wait_decision(owner_engine, user["user_id"], "APPROVED")
    wait_for_equal(hold, None, "the hold to lift")
    history = compliance(api_url, user["user_id"])
    runs = list(reversed(history["screenings"]))
    assert [(r["trigger"], r["decision"]) for r in runs] == [
        ("registration", "APPROVED"), ("rescreen", "REJECTED"), ("rescreen", "APPROVED")]
    snapshots = [r["list_snapshot"]["snapshot_id"] for r in runs]
    assert snapshots == sorted(snapshots) and len(set(snapshots)) == 3
    assert runs[1]["list_snapshot"]["counts"]["eth_addresses"] == runs[0]["list_snapshot"]["counts"][
        "eth_addresses"] + 1


def test_malformed_list_files_are_recorded_and_the_last_good_snapshot_stays(stack, owner_engine):
    sdn = stack.layout.ofac_dir / "SDN.CSV"
    original = sdn.read_bytes()
    latest = "SELECT max(snapshot_id) FROM compliance.list_snapshots"
    before = _count(owner_engine, latest)
    failures = _count(owner_engine, "SELECT count(*) FROM compliance.list_load_failures")
    try:
        sdn.write_bytes(b'36,"AEROCARIBBEAN AIRLINES",-0-\n')
        stack.admin.publish("compliance.lists.tick", b'{"source": "test"}')
        wait_for(lambda: _count(owner_engine, "SELECT count(*) FROM compliance.list_load_failures") > failures,
                 "refresh-sanctions to record the refusal")
    finally:
        sdn.write_bytes(original)
    with owner_engine.connect() as conn:
        reason = conn.execute(sqlalchemy.text(
            "SELECT reason FROM compliance.list_load_failures ORDER BY id DESC LIMIT 1")).scalar()
    assert "SDN.CSV line 1: expected 12 columns" in reason
    assert _count(owner_engine, latest) == before


def test_files_equal_to_the_latest_snapshot_are_not_parsed_again(stack, owner_engine, monkeypatch):
    """Most ticks find OFAC's files unchanged: their digest is compared with the latest snapshot's before
    anything is parsed. Files whose digest differed at that check are parsed and handed to store_snapshot,
    which checks again under its lock: when another load stored the same files in between (here: the
    stack's own load), nothing more is stored."""
    stack.refresh_sanctions(first_load_only=True)
    function = stack.topology.function("refresh-sanctions")
    env = stack.function_env(function, stack.layout.read_state()["escrow_address"])
    refresher = SanctionsRefresher(Settings.from_env(env, parts=[ComplianceSettings, SanctionsSourceSettings]))
    parsed: list[dict] = []
    monkeypatch.setattr(refresh, "parse_lists", lambda files: parsed.append(files) or ofac.parse_lists(files))
    latest = "SELECT max(snapshot_id) FROM compliance.list_snapshots"
    before = _count(owner_engine, latest)

    assert refresher.run_tick()["snapshot_id"] is None
    assert parsed == []
    downloaded = download_lists(refresher.source)
    assert refresher._load(downloaded, ofac.content_digest(downloaded.files)) is None
    assert len(parsed) == 1
    assert _count(owner_engine, latest) == before


def test_no_log_line_carries_the_users_name_birth_date_or_document_number(stack, api_url, owner_engine):
    secret_name = f"Zebulon Quixworth {uuid.uuid4().hex[:6]}"
    body = registration(secret_name, date_of_birth="1979-03-14")
    body["identity_document"]["number"] = f"PII{uuid.uuid4().hex[:10].upper()}"
    # An under-age attempt as well: rejections log their reasons, never the data behind them.
    under_age = registration(secret_name, date_of_birth="2013-07-21")
    for user_body in (body, under_age):
        user = register(api_url, user_body)
        wait_decision(owner_engine, user["user_id"])
    logs = {path.name: path.read_text(errors="replace") for path in stack.layout.logs.glob("*.log")}
    assert "screen-compliance.log" in logs and "api.log" in logs
    document_number = body["identity_document"]["number"]
    for needle in (secret_name, secret_name.split()[1], "1979-03-14", "2013-07-21", document_number):
        leaking = [name for name, text in logs.items() if needle in text]
        assert leaking == [], f"{needle!r} appears in {leaking}"


def test_a_name_index_built_by_other_rules_is_not_read_and_the_next_refresh_rebuilds_it(stack, api_url, owner_engine,
                                                                                      lists):
    """A deploy that changes the matching rules (shared/compliance/names.py) leaves the stored name index
    with keys of the old rules: screening does not read it, it screens against the whole list in memory
    (and says so), and the next refresh tick stores the index again by the running code's rules."""
    latest = stack.refresh_sanctions(first_load_only=True)
    rules = "SELECT rules_version FROM compliance.name_indexes WHERE snapshot_id = :s"
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE compliance.name_indexes SET rules_version = 'an older deploy' "
                                     "WHERE snapshot_id = :s"), {"s": latest})
    try:
        ent_num, name = close_variant_of_a_listed_individual(lists)
        user = register(api_url, registration(name, country="CO"))
        wait_decision(owner_engine, user["user_id"], "REVIEW")
        [run] = compliance(api_url, user["user_id"])["screenings"]
        assert [h["list_entry"] for h in run["hits"] if h["code"] == "sanctions.name_match"] == [ent_num]
        assert "no name index built by this code's matching rules" in (
            stack.layout.logs / "screen-compliance.log").read_text(errors="replace")
    finally:
        stack.admin.publish("compliance.lists.tick", b'{"source": "test"}')
        wait_for_equal(lambda: _count(owner_engine, rules, s=latest), rules_version(),
                       "refresh-sanctions to rebuild the name index by this code's rules")
