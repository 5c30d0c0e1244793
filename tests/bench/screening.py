"""Sanctions screening: recall, false positives and speed on the evaluation set, and list load time.

    make bench
    python -m tests.bench.screening

Names screened: the labelled evaluation set (tests/support/screening_eval.py: variants of listed
individuals by kind, and common real names), each searched as screen-compliance searches (blocking
index, then scoring of the candidates), with the index's token cache emptied before each round.
Baseline, in the same run, on the same names: plain rapidfuzz, `token_sort_ratio` of the normalised
name against every listed name (`process.extract`, C), at the same threshold (92).
Recall counts a variant found when its own entry is among the REVIEW matches; false positives are
clean names sent to REVIEW, counted on those whose words do not all appear in one listed entry.
Wallet screening is an exact set lookup and is not measured.

List load: download-free parts of a refresh, each timed on its own: parsing the five files, storing
the snapshot in PostgreSQL with its name index (in a transaction rolled back afterwards), and what a
screening reads of it: for one registration, the part of the stored name index its name reaches
(`read_subject_view`, every name of the evaluation set in turn), against building the whole name index
in memory (`read_list_view`), which a new screen-compliance instance did on its first registration and
rescreen still does once per instance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy
from rapidfuzz import fuzz, process

from shared.compliance.lists import read_list_view, read_subject_view, store_name_index, store_snapshot
from shared.compliance.names import name_roles, normalise
from shared.compliance.ofac import ADDRESS_LIST, parse_lists
from shared.compliance.settings import DEFAULT_NAME_MATCH_REPORT_THRESHOLD, DEFAULT_NAME_MATCH_REVIEW_THRESHOLD
from shared.stack.stack import Stack
from tests.bench import report
from tests.conftest import TEST_LAYOUT
from tests.support import screening_eval
from tests.support.compliance import OFAC_DATA
from tests.support.database import OnSqlAlchemy

FILES = {"sdn": "sdn.csv", "alt": "alt.csv", "add": "add.csv", "comments": "sdn_comments.csv",
         ADDRESS_LIST: "sanctioned_addresses_ETH.txt"}
def _timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _rapidfuzz_baseline(view):
    """search(name, threshold) -> ent_nums, by token_sort_ratio against every listed name."""
    listed = [" ".join(name_roles(n.name, listed_individual=True)[0]) for n in view.names.names]
    ent_nums = [n.ent_num for n in view.names.names]

    def search(name: str, threshold: float) -> list[int]:
        found = process.extract(normalise(name), listed, scorer=fuzz.token_sort_ratio, score_cutoff=threshold * 100,
                                limit=5)
        return [ent_nums[i] for _, _, i in found]
    return search


def _screening(view):
    """search(name, threshold) -> ent_nums, as check_name searches (report threshold, then REVIEW)."""
    def search(name: str, threshold: float) -> list[int]:
        return [m.listed.ent_num for m in view.names.search(name, DEFAULT_NAME_MATCH_REPORT_THRESHOLD)
                if m.score >= threshold]
    return search


def _evaluate(search, data, rounds: int, before_round=lambda: None) -> tuple[dict, float]:
    """The evaluation, and the median seconds of `rounds` runs over every name of the set."""
    seconds, result = [], None
    for _ in range(rounds):
        before_round()
        took, result = _timed(lambda: screening_eval.evaluate(search, DEFAULT_NAME_MATCH_REVIEW_THRESHOLD, data))
        seconds.append(took)
    return result, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = {key: (OFAC_DATA / name).read_bytes() for key, name in FILES.items()}
    parse_seconds, lists = _timed(lambda: parse_lists(files))
    # A snapshot the stack has not loaded (one more address), so storing it does the full work.
    changed = parse_lists({**files, ADDRESS_LIST: files[ADDRESS_LIST] + b"0x" + b"cd" * 20 + b"\n"})
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        data = screening_eval.load()
        every_name = [p["name"] for p in data["positives"]] + [n["name"] for n in data["negatives"]]
        stores, index_stores, builds, parts = [], [], [], []
        for _ in range(args.rounds):
            with owner.connect() as connection:
                conn = OnSqlAlchemy(connection)
                transaction = connection.begin()
                try:
                    seconds, snapshot_id = _timed(lambda conn=conn: store_snapshot(conn, changed, "bench", None))
                    stores.append(seconds)
                    index_stores.append(_timed(lambda stored=snapshot_id, conn=conn: store_name_index(conn, stored))[0])
                    seconds, view = _timed(lambda stored=snapshot_id, conn=conn: read_list_view(conn, stored))
                    builds.append(seconds)
                    parts = [_timed(lambda stored=snapshot_id, conn=conn, name=name: read_subject_view(
                        conn, stored, {"name": name, "wallet_addresses": []}))[0] for name in every_name]
                finally:
                    transaction.rollback()
        owner.dispose()
    finally:
        stack.down()

    names = len(every_name)
    ours, ours_seconds = _evaluate(_screening(view), data, args.rounds, view.names._close_cache.clear)
    plain, plain_seconds = _evaluate(_rapidfuzz_baseline(view), data, args.rounds)

    print(f"sanctions list: {lists.counts}; {len(view.names)} individual names and aliases screened")
    print(f"{'list load':44} {'seconds':>8}")
    print(f"{'  parse the five files':44} {parse_seconds:8.2f}")
    print(f"{'  store the snapshot (PostgreSQL)':44} {statistics.median(stores):8.2f}")
    print(f"{'    of which its name index':44} {statistics.median(index_stores):8.2f}")
    print(f"{'  build the whole name index from it':44} {statistics.median(builds):8.3f}")
    parts.sort()
    print(f"{'  read one registration`s part of the index':44} {statistics.median(parts):8.4f} "
          f"(median of the {len(parts)} names; 90th percentile {parts[len(parts) * 9 // 10]:.4f}, "
          f"slowest {parts[-1]:.4f})")
    report.record("a registration's list read: its part of the stored index (vs building the whole index)",
                  statistics.median(parts), "s", statistics.median(builds))
    print(f"name screening of the evaluation set: {len(data['positives'])} variants of listed names, "
          f"{ours['negatives']} clean names (+{len(data['negatives']) - ours['negatives']} whose words all appear "
          f"in one entry); REVIEW at >= {DEFAULT_NAME_MATCH_REVIEW_THRESHOLD}, median of {args.rounds} rounds")
    print(f"{'':30} {'screening':>10} {'rapidfuzz':>10} {'ratio':>8}")
    for kind, recall in ours["recall_by_kind"].items():
        print(f"{'  recall, ' + kind:30} {recall:10.1%} {plain['recall_by_kind'][kind]:10.1%} "
              f"{recall / max(plain['recall_by_kind'][kind], 1e-9):8.2f}")
    print(f"{'recall, all':30} {ours['recall']:10.1%} {plain['recall']:10.1%} {ours['recall'] / plain['recall']:8.2f}")
    print(f"{'false positives':30} {ours['fp']:10.1%} {plain['fp']:10.1%}")
    print(f"{'false positives, all clean':30} {ours['fp_all']:10.1%} {plain['fp_all']:10.1%}")
    print(f"{'names/s (one core)':30} {names / ours_seconds:10.0f} {names / plain_seconds:10.0f} "
          f"{plain_seconds / ours_seconds:8.2f}")
    report.record("name screening recall (vs rapidfuzz)", ours["recall"], "share", plain["recall"], better="higher")
    report.record("name screening (vs rapidfuzz)", names / ours_seconds, "names/s", names / plain_seconds,
                  better="higher")
    print("(baseline: rapidfuzz token_sort_ratio against every listed name, same names, same run; "
          "ratio = screening / baseline, speed as baseline time / screening time)")
    print(f"missed: {[(m['kind'], m['name']) for m in ours['missed']]}; flagged clean: {ours['flagged']}")
    held_out = screening_eval.generate(seed=screening_eval.SEED + 1)
    ours, _ = _evaluate(_screening(view), held_out, 1)
    plain, _ = _evaluate(_rapidfuzz_baseline(view), held_out, 1)
    print(f"held-out set (seed {held_out['seed']}: other listed and clean names, never tuned against): recall "
          f"{ours['recall']:.1%} vs rapidfuzz {plain['recall']:.1%}, false positives {ours['fp']:.1%} vs "
          f"{plain['fp']:.1%}; by kind {({k: round(v, 3) for k, v in ours['recall_by_kind'].items()})}")
    print(f"held-out missed: {[(m['kind'], m['name']) for m in ours['missed']]}; flagged clean: {ours['flagged']}")


if __name__ == "__main__":
    main()
