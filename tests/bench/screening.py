"""Sanctions screening: name screening throughput against the full SDN snapshot, and list load time.

    make bench
    python -m tests.bench.screening --names 2000

Names screened: half are real listed individuals' names with one letter dropped (the matches that
matter), half are clean names made of common given and family names; each is searched as
screen-compliance searches (token prefilter, then watchman-like scoring of the candidates).
Baseline, in the same run: as many exact dictionary lookups of the normalised names (what an exact
name match would cost). Wallet screening is an exact set lookup and is not measured.

List load: download-free parts of a refresh, each timed on its own: parsing the five files, storing
the snapshot in PostgreSQL (in a transaction rolled back afterwards) and building the in-memory
name index from the stored snapshot, as a new screen-compliance instance does.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import sqlalchemy

from shared.compliance.lists import read_list_view, store_snapshot
from shared.compliance.names import normalise
from shared.compliance.ofac import ADDRESS_LIST, parse_lists
from shared.stack.stack import Stack
from tests.conftest import TEST_LAYOUT
from tests.support.compliance import OFAC_DATA

FILES = {"sdn": "sdn.csv", "alt": "alt.csv", "add": "add.csv", "comments": "sdn_comments.csv",
         ADDRESS_LIST: "sanctioned_addresses_ETH.txt"}
GIVEN = ["Ada", "Grace", "Alan", "Linus", "Tobias", "Marta", "Sofia", "Jonas", "Emma", "Lucas", "Noor", "Kenji"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Pauling", "Lindqvist", "Kowalski", "Brennan", "Okafor", "Tanaka",
          "Moreau", "Van Dijk", "Haugen"]
NAME_THRESHOLD = 0.85


def _timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _queries(lists, count: int, rng: random.Random) -> list[str]:
    individuals = [e["name"] for e in lists.entries if e["sdn_type"] == "individual" and e["name"].count(",") == 1]
    listed = []
    for name in rng.sample(individuals, count // 2):
        last, first = name.split(",")
        turned = f"{first.strip()} {last.strip()}"
        drop = rng.randrange(len(turned))
        listed.append(turned[:drop] + turned[drop + 1:])
    clean = [f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}" for _ in range(count - len(listed))]
    return listed + clean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    files = {key: (OFAC_DATA / name).read_bytes() for key, name in FILES.items()}
    parse_seconds, lists = _timed(lambda: parse_lists(files))
    # A snapshot the stack has not loaded (one more address), so storing it does the full work.
    changed = parse_lists({**files, ADDRESS_LIST: files[ADDRESS_LIST] + b"0x" + b"cd" * 20 + b"\n"})
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        stores, builds = [], []
        for _ in range(args.rounds):
            with owner.connect() as conn:
                transaction = conn.begin()
                try:
                    seconds, snapshot_id = _timed(lambda: store_snapshot(conn, changed, "bench", None))
                    stores.append(seconds)
                    seconds, view = _timed(lambda stored=snapshot_id: read_list_view(conn, stored))
                    builds.append(seconds)
                finally:
                    transaction.rollback()
        owner.dispose()
    finally:
        stack.down()

    queries = _queries(lists, args.names, rng)
    exact = {normalise(listed.name, listed_individual=True): listed for listed in view.names.names}
    searches, lookups, matched = [], [], 0
    for _ in range(args.rounds):
        seconds, found = _timed(lambda: [view.names.search(q, NAME_THRESHOLD) for q in queries])
        searches.append(seconds)
        matched = sum(1 for f in found if f)
        seconds, _ = _timed(lambda: [exact.get(normalise(q)) for q in queries])
        lookups.append(seconds)
    search, lookup = statistics.median(searches), statistics.median(lookups)

    print(f"sanctions list: {lists.counts}; {len(view.names)} individual names and aliases screened")
    print(f"{'list load':44} {'seconds':>8}")
    print(f"{'  parse the five files':44} {parse_seconds:8.2f}")
    print(f"{'  store the snapshot (PostgreSQL)':44} {statistics.median(stores):8.2f}")
    print(f"{'  build the name index from the snapshot':44} {statistics.median(builds):8.2f}")
    print(f"name screening of {len(queries)} names, median of {args.rounds} rounds "
          f"({matched} matched at >= {NAME_THRESHOLD})")
    print(f"{'':44} {'names/s':>10} {'baseline':>10} {'ratio':>8}")
    print(f"{'fuzzy screening vs exact dict lookups':44} {len(queries) / search:10.0f} "
          f"{len(queries) / lookup:10.0f} {search / lookup:8.0f}")
    print("(baseline: one dict lookup of each normalised name; ratio = screening time / baseline time)")


if __name__ == "__main__":
    main()
