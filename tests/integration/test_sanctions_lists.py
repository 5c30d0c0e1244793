"""Storing sanctions list snapshots and their name indexes in the real PostgreSQL (in transactions rolled back
at the end)."""

import gc
import logging

import sqlalchemy

from shared.addresses import checksum_address
from shared.compliance.lists import (
    SCREENED_SDN_TYPE,
    ListCache,
    ensure_name_index,
    latest_snapshot,
    read_list_view,
    read_subject_view,
    store_snapshot,
)
from shared.compliance.names import rules_version
from shared.compliance.ofac import ADDRESS_LIST, parse_lists
from tests.support import screening_eval
from tests.support.compliance import OFAC_DATA
from tests.support.database import OnSqlAlchemy

NAMES = {"sdn": "sdn.csv", "alt": "alt.csv", "add": "add.csv", "comments": "sdn_comments.csv",
         ADDRESS_LIST: "sanctioned_addresses_ETH.txt"}
EXTRA = "0x" + "ab" * 20


def _count(conn, table: str, snapshot_id: int) -> int:
    return conn.execute(sqlalchemy.text(f"SELECT count(*) FROM compliance.{table} WHERE snapshot_id = :s"),
                        {"s": snapshot_id}).scalar()


def test_a_snapshot_is_stored_once_per_change_of_the_files(stack, owner_engine):
    files = {key: (OFAC_DATA / name).read_bytes() for key, name in NAMES.items()}
    real = parse_lists(files)
    updated = parse_lists({**files, ADDRESS_LIST: files[ADDRESS_LIST] + f"{EXTRA}\n".encode()})
    with owner_engine.connect() as connection:
        conn = OnSqlAlchemy(connection)
        transaction = connection.begin()
        try:
            # The stack loaded these very files at start-up: loading them again stores nothing.
            assert store_snapshot(conn, real, "test", None) is None
            added = store_snapshot(conn, updated, "test", None)
            assert added is not None
            assert store_snapshot(conn, updated, "test", None) is None
            assert (_count(conn, "sdn_entries", added), _count(conn, "sdn_aliases", added),
                    _count(conn, "sdn_addresses", added), _count(conn, "listed_wallets", added)) == (
                8976, 11910, 13837, 153)
            collections = sum(generation["collections"] for generation in gc.get_stats())
            view = read_list_view(conn, added)
            # Built with the collector paused: at most the one collection its re-enabling sets off.
            assert sum(generation["collections"] for generation in gc.get_stats()) - collections <= 1
            assert len(view.wallets) == 153 and len(view.names) > 10000
            # Exactly what the parsed files say: every wallet, every entry, individuals' names and aliases.
            individuals = {e["ent_num"] for e in updated.entries if e["sdn_type"] == SCREENED_SDN_TYPE}
            assert view.wallets == updated.wallets
            assert view.entries == {e["ent_num"]: {"name": e["name"], "sdn_type": e["sdn_type"],
                                                   "programs": e["programs"]} for e in updated.entries}
            assert sorted((n.ent_num, n.alt_num or 0, n.name) for n in view.names.names) == sorted(
                [(e["ent_num"], 0, e["name"]) for e in updated.entries if e["ent_num"] in individuals]
                + [(a["ent_num"], a["alt_num"], a["name"]) for a in updated.aliases if a["ent_num"] in individuals])
            # Back to the earlier files (a delisting reverted): a new version, loaded again.
            reverted = store_snapshot(conn, real, "test", None)
            assert reverted is not None and reverted > added
        finally:
            transaction.rollback()


def test_a_snapshot_stores_its_name_index_and_a_registration_reads_the_part_its_screening_can_touch(
        stack, owner_engine, caplog):
    files = {key: (OFAC_DATA / name).read_bytes() for key, name in NAMES.items()}
    updated = parse_lists({**files, ADDRESS_LIST: files[ADDRESS_LIST] + f"{EXTRA}\n".encode()})
    data = screening_eval.load()
    names = [p["name"] for p in data["positives"][::4]] + [n["name"] for n in data["negatives"][::4]]
    with owner_engine.connect() as connection:
        conn = OnSqlAlchemy(connection)
        transaction = connection.begin()
        try:
            added = store_snapshot(conn, updated, "test", None)
            assert latest_snapshot(conn) == (added, rules_version())
            whole = read_list_view(conn, added)
            assert conn.execute(sqlalchemy.text(
                "SELECT names, keys FROM compliance.name_indexes WHERE snapshot_id = :s"), {"s": added}).one() == (
                len(whole.names), len(whole.names.neighbours))
            # What one registration reads finds what the whole list finds: matches, evidence and entries.
            for name in names:
                part = read_subject_view(conn, added, {"name": name, "wallet_addresses": []})
                expected = whole.names.search(name, 0.85)
                found = part.names.search(name, 0.85)
                assert found == expected and [m.evidence for m in found] == [m.evidence for m in expected], name
                assert all(part.entries[m.listed.ent_num] == whole.entries[m.listed.ent_num] for m in found)
                assert len(part.names) < len(whole.names) / 4
            # Its wallets: the listed one among them, however it is spelled; a name that is not a string reads none.
            part = read_subject_view(conn, added, {"name": None, "wallet_addresses": [
                EXTRA.upper().replace("0X", "0x"), "0x" + "cd" * 20, "not an address", 7]})
            assert part.wallets == {checksum_address(EXTRA): None} and len(part.names) == 0
            # A snapshot loaded later stores its own; the index before it stays, older ones go.
            reverted = store_snapshot(conn, parse_lists(files), "test", None)
            assert conn.execute(sqlalchemy.text(
                "SELECT array_agg(snapshot_id ORDER BY snapshot_id) FROM compliance.name_indexes")).scalar() == [
                added, reverted]
            assert _count(conn, "name_index_keys", 1) == _count(conn, "name_index_names", 1) == 0
            # Built by other matching rules (a deploy changed them): not read, the whole list screens instead,
            # said once; the next refresh rebuilds it.
            conn.execute(sqlalchemy.text("UPDATE compliance.name_indexes SET rules_version = 'other' "
                                         "WHERE snapshot_id = :s"), {"s": reverted})
            lists = ListCache()
            with caplog.at_level(logging.WARNING, logger="shared.compliance.lists"):
                for _ in range(2):
                    assert len(lists.for_subject(conn, {"name": names[0], "wallet_addresses": []}).names) > 10000
            assert [r.snapshot_id for r in caplog.records if "no name index" in r.getMessage()] == [reverted]
            assert ensure_name_index(conn) == reverted and ensure_name_index(conn) is None
            assert latest_snapshot(conn) == (reverted, rules_version())
            assert len(lists.for_subject(conn, {"name": names[0], "wallet_addresses": []}).names) < 10000
        finally:
            transaction.rollback()
