"""Sharded rescreening on the stack: a new list snapshot → refresh-sanctions fans out RescreenRequested shards
on compliance.rescreen.v1 → the rescreen function covers every screened user exactly once; a shard
delivered again (or re-planned) changes nothing; malformed shard requests are refused with their reason."""

import json
import math
import secrets

import pytest
import sqlalchemy

from shared.stack.chain_driver import wait_for
from shared.stack.ofac_server import ADDRESS_LIST_NAME
from shared.topics import RESCREEN_REQUESTS
from tests.support.compliance import register, registration, wait_decision

SHARD_USERS = 25  # the stack's RESCREEN_SHARD_USERS
USERS = 60


@pytest.fixture(scope="module")
def api_url(stack):
    return f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"


def _rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql), params).all()


def _shard_request(event_id: str, **payload) -> bytes:
    return json.dumps({
        "event_id": event_id, "event_type": "RescreenRequested", "schema_version": 1,
        "occurred_at": "2026-12-02T00:00:00+00:00", "correlation_id": event_id, "causation_id": None,
        "payload": payload}).encode()


@pytest.fixture(scope="module")
def rescreened(stack, api_url, owner_engine):
    """A new snapshot (one more listed address) after USERS more registrations; the snapshot id once
    every user is rescreened. The list is put back (and rescreened again) afterwards."""
    users = [register(api_url, registration(f"Shard Tester {n} {secrets.token_hex(3)}"))["user_id"]
             for n in range(USERS)]
    for user_id in users:
        wait_decision(owner_engine, user_id)
    address_list = stack.layout.ofac_dir / ADDRESS_LIST_NAME
    original = address_list.read_text()
    try:
        address_list.write_text(original + "0x" + secrets.token_hex(20) + "\n")
        snapshot_id = stack.refresh_sanctions()
        wait_for(lambda: not _rows(owner_engine, "SELECT 1 FROM compliance.subjects WHERE last_snapshot_id < :s",
                                   s=snapshot_id), "every user rescreened against the new snapshot", timeout=120)
        yield snapshot_id
    finally:
        address_list.write_text(original)
        stack.refresh_sanctions()


def test_every_user_is_rescreened_exactly_once_across_the_shards(owner_engine, rescreened):
    [plan] = _rows(owner_engine, "SELECT generation, shards, users_behind FROM compliance.rescreen_plans "
                                 "WHERE snapshot_id = :s", s=rescreened)
    everyone = {row.user_id for row in _rows(owner_engine, "SELECT user_id FROM compliance.subjects")}
    assert plan.generation == 1 and plan.users_behind == len(everyone) >= USERS
    assert plan.shards == math.ceil(plan.users_behind / SHARD_USERS) > 1
    runs = dict(_rows(owner_engine, "SELECT user_id, count(*) FROM compliance.screenings "
                                    "WHERE snapshot_id = :s AND trigger = 'rescreen' GROUP BY user_id", s=rescreened))
    assert set(runs) == everyone and set(runs.values()) == {1}
    applied = _rows(owner_engine, "SELECT event_id FROM compliance.inbox WHERE consumer = 'rescreen' "
                                  "AND event_id LIKE :prefix AND outcome = 'applied'",
                    prefix=f"RescreenRequested:{rescreened}:1:%")
    assert len(applied) == plan.shards


def test_a_shard_planned_again_finds_nobody_left(stack, owner_engine, rescreened):
    before = _rows(owner_engine, "SELECT count(*) FROM compliance.screenings")[0][0]
    event_id = f"RescreenRequested:{rescreened}:99:0"
    stack.admin.publish(RESCREEN_REQUESTS, _shard_request(event_id, snapshot_id=rescreened, generation=99, shard=0,
                                                       shards=1, key_from=0, key_to=65536))
    wait_for(lambda: _rows(owner_engine, "SELECT outcome FROM compliance.inbox WHERE consumer = 'rescreen' "
                                         "AND event_id = :e", e=event_id), "the re-planned shard applied")
    assert _rows(owner_engine, "SELECT count(*) FROM compliance.screenings")[0][0] == before


@pytest.mark.parametrize("payload, reason", [
    ({"snapshot_id": 1, "generation": 1, "shard": 0, "shards": 2, "key_from": 500, "key_to": 500}, "key_from < key_to"),
    ({"snapshot_id": 1, "generation": 1, "shard": 2, "shards": 2, "key_from": 0, "key_to": 10}, "shard < shards"),
    ({"snapshot_id": 1, "generation": 1, "shard": 0, "shards": 1, "key_from": 0, "key_to": 70000}, "key_to"),
    ({"snapshot_id": "1", "generation": 1, "shard": 0, "shards": 1, "key_from": 0, "key_to": 10}, "snapshot_id"),
    ({"generation": 1, "shard": 0, "shards": 1, "key_from": 0, "key_to": 10}, "snapshot_id is missing"),
])
def test_a_malformed_shard_request_is_refused_with_its_reason(stack, owner_engine, payload, reason):
    event_id = f"RescreenRequested:hostile:{secrets.token_hex(4)}"
    before = _rows(owner_engine, "SELECT count(*) FROM compliance.screenings")[0][0]
    stack.admin.publish(RESCREEN_REQUESTS, _shard_request(event_id, **payload))
    [(stored_reason,)] = wait_for(lambda: _rows(
        owner_engine, "SELECT reason FROM compliance.rejected_messages WHERE consumer = 'rescreen' "
                      "AND event_id = :e", e=event_id), "the refusal recorded")
    assert reason in stored_reason
    assert _rows(owner_engine, "SELECT count(*) FROM compliance.screenings")[0][0] == before
    # The function still serves: a well-formed shard of nobody is applied.
    served = f"RescreenRequested:served:{secrets.token_hex(4)}"
    stack.admin.publish(RESCREEN_REQUESTS, _shard_request(served, snapshot_id=1, generation=1, shard=0, shards=65536,
                                                       key_from=0, key_to=1))
    wait_for(lambda: _rows(owner_engine, "SELECT 1 FROM compliance.inbox WHERE consumer = 'rescreen' "
                                         "AND event_id = :e", e=served), "the next shard applied")
