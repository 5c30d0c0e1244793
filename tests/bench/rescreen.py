"""Rescreening one shard: users per second on one instance, and the arithmetic for a million users.

    make bench
    python -m tests.bench.rescreen --users 5000

Seeded (untimed, in a transaction rolled back at the end): `--users` screened subjects behind the newest
snapshot, named from the evaluation set (variants of listed people and clean names, so hits, REVIEW
decisions and their rows are written as in life). Measured with the rescreen function's own handler
(`ComplianceService.rescreen_shard`, one shard covering every key) on the stack's PostgreSQL: screening,
the screening and hit rows, the subject update and the results staged in the outbox. Baseline, same run:
`screen()` alone over the same subjects, in memory (what the rescreening would cost with a free database).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime

import sqlalchemy

from shared.compliance.lists import ListCache
from shared.compliance.screening import screen
from shared.compliance.service import ComplianceService, _screened_view
from shared.envelope import Envelope
from shared.events import RESCREEN_REQUESTED
from shared.stack.stack import Stack
from tests.bench import report
from tests.conftest import TEST_LAYOUT
from tests.support import screening_eval
from tests.support.compliance import SCREENING_POLICY
from tests.support.database import OnSqlAlchemy

POLICY = SCREENING_POLICY
MILLION = 1_000_000
INSTANCES = 20
TARGET_MINUTES = 30

_SEED = """
INSERT INTO compliance.subjects (user_id, registered_event_id, correlation_id, name, date_of_birth, country,
    wallet_addresses, identity_document, decision, latest_screening_id, last_snapshot_id, result_sequence)
SELECT 'bench-' || n, 'bench', 'bench', names[1 + mod(n, cardinality(names))], DATE '1980-05-05', 'NL',
       jsonb_build_array('0x' || lpad(to_hex(n), 40, '0')),
       '{"type": "passport", "issuing_country": "NL", "expires_on": "2031-01-31"}', 'APPROVED', 0, 0, 1
FROM generate_series(1, :users) AS n, (SELECT CAST(:names AS text[]) AS names) AS given
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=5000)
    args = parser.parse_args()
    data = screening_eval.load()
    names = [p["name"] for p in data["positives"]] + [n["name"] for n in data["negatives"]]
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        service = ComplianceService(POLICY, ListCache())
        with owner.connect() as connection:
            conn = OnSqlAlchemy(connection)
            transaction = connection.begin()
            try:
                conn.execute(sqlalchemy.text(_SEED), {"users": args.users, "names": names})
                view = service.lists.latest(conn)  # builds the name index (untimed, as on a warm instance)
                subjects = conn.execute(sqlalchemy.text(
                    "SELECT * FROM compliance.subjects WHERE user_id LIKE 'bench-%'")).mappings().all()
                started = time.perf_counter()
                for subject in subjects:
                    screen(_screened_view(subject), datetime.now(UTC).date(), view, POLICY)
                in_memory = time.perf_counter() - started
                shard = Envelope(event_id=f"{RESCREEN_REQUESTED}:bench", event_type=RESCREEN_REQUESTED,
                                 schema_version=1, occurred_at=datetime.now(UTC).isoformat(), correlation_id="bench",
                                 causation_id=None, payload={"snapshot_id": view.snapshot_id, "generation": 1,
                                                             "shard": 0, "shards": 1, "key_from": 0,
                                                             "key_to": 65536})
                started = time.perf_counter()
                outgoing = service.rescreen_shard(conn, shard)
                shard_seconds = time.perf_counter() - started
                rescreened = conn.execute(sqlalchemy.text(
                    "SELECT count(*) FROM compliance.subjects WHERE user_id LIKE 'bench-%' "
                    "AND last_snapshot_id = :s"), {"s": view.snapshot_id}).scalar()
                decisions = json.dumps(dict(conn.execute(sqlalchemy.text(
                    "SELECT decision, count(*) FROM compliance.subjects WHERE user_id LIKE 'bench-%' "
                    "GROUP BY decision")).all()))
            finally:
                transaction.rollback()
        owner.dispose()
    finally:
        stack.down()

    rate, baseline = rescreened / shard_seconds, len(subjects) / in_memory
    minutes = MILLION / (rate * INSTANCES) / 60
    print(f"rescreening one shard of {rescreened} users ({len(outgoing)} decisions changed: {decisions})")
    print(f"{'':46} {'users/s':>9} {'baseline':>9} {'ratio':>7}")
    print(f"{'rescreen_shard (PostgreSQL) vs screen() alone':46} {rate:9.0f} {baseline:9.0f} {rate / baseline:7.2f}")
    report.record("rescreen shard (vs screen() alone)", rate, "users/s", baseline, better="higher")
    print("(baseline: screen() of the same subjects in memory, same run; ratio = shard rate / baseline rate)")
    needed = math.ceil(MILLION / TARGET_MINUTES / 60 / INSTANCES)
    print(f"a million users on {INSTANCES} instances at this rate: {minutes:.1f} min "
          f"(target <= {TARGET_MINUTES} min; needs {needed} users/s per instance); "
          f"{MILLION / 1000:.0f} shards of 1,000 users, ~{1000 / rate:.1f} s each")


if __name__ == "__main__":
    main()
