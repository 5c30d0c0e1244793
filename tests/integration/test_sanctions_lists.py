"""Storing sanctions list snapshots in the real PostgreSQL (in a transaction rolled back at the end)."""

import gc

import sqlalchemy

from shared.compliance.lists import SCREENED_SDN_TYPE, read_list_view, store_snapshot
from shared.compliance.ofac import ADDRESS_LIST, parse_lists
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
