"""Sanctions list snapshots: download OFAC's files, store them as one versioned snapshot, read one back.

A snapshot records the digest of its files; files equal to the latest snapshot's are not stored again.
It is written in one transaction (rows travel as one JSON parameter per table and are expanded by
`jsonb_to_recordset`, a few statements instead of thirty thousand round trips), with its name index:
the blocking index of shared/compliance/names.py, stored so that one registration's screening reads, in
one statement, the part of the list it can match (`read_subject_view`), where it used to build the whole
index in memory first (0.2-0.4 s of a new instance's first answer). Batches (rescreening) still build
the whole view once per instance (`read_list_view`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from shared.addresses import checksum_address, is_hex_address
from shared.compliance import SCHEMA
from shared.compliance.names import ListedName, NameIndex, rules_version, search_keys
from shared.compliance.ofac import ADDRESS_LIST, OFAC_FILES, ParsedLists
from shared.compliance.screening import ListView
from shared.compliance.settings import SanctionsSourceSettings
from shared.db import Connection, sql
from shared.errors import SanctionsListUnavailable
from shared.garbage_collection import collector_paused

log = logging.getLogger(__name__)
# Screening matches names against individuals: users are people.
SCREENED_SDN_TYPE = "individual"


@dataclass(frozen=True)
class DownloadedLists:
    """OFAC's files as downloaded, and what the publisher said about them."""

    files: dict[str, bytes]
    source: str
    published_at: datetime | None


def download_lists(source: SanctionsSourceSettings) -> DownloadedLists:
    """GET every file; SanctionsListUnavailable (retried) when one cannot be had."""
    # Imported here: only refresh-sanctions downloads, and screen-compliance and rescreen (which load
    # this module for the list view) would pay 40-50 ms of their cold start for it.
    import requests

    urls = {name: f"{source.list_base_url}/{filename}" for name, filename in OFAC_FILES.items()}
    if source.address_list_url:
        urls[ADDRESS_LIST] = source.address_list_url
    files: dict[str, bytes] = {}
    published_at = None
    with requests.Session() as session:
        for name, url in urls.items():
            try:
                reply = session.get(url, timeout=source.timeout_seconds)
            except requests.RequestException as exc:
                raise SanctionsListUnavailable(f"GET {url}: {exc}") from exc
            if reply.status_code != 200:
                raise SanctionsListUnavailable(f"GET {url}: HTTP {reply.status_code}")
            files[name] = reply.content
            if name == "sdn" and reply.headers.get("Last-Modified"):
                try:
                    published_at = parsedate_to_datetime(reply.headers["Last-Modified"])
                except (TypeError, ValueError):
                    published_at = None
    return DownloadedLists(files=files, source=source.list_base_url, published_at=published_at)


# table -> its columns with their SQL types, as jsonb_to_recordset reads the rows
_RECORDS = {
    "sdn_entries": "ent_num int, name text, sdn_type text, programs text, title text, remarks text",
    "sdn_aliases": "ent_num int, alt_num int, alt_type text, name text, remarks text",
    "sdn_addresses": "ent_num int, add_num int, address text, city text, country text, remarks text",
    "listed_wallets": "address text, ent_num int",
    "name_index_names": "position int, ent_num int, alt_num int, name text, entry_name text, programs text",
    "name_index_tokens": "token text, positions int[]",
    "name_index_keys": "key text, tokens text[]",
}


_LOCK_SNAPSHOTS = sql("SELECT pg_advisory_xact_lock(hashtext('compliance.list_snapshots'))")
_ADD_SNAPSHOT = sql(f"INSERT INTO {SCHEMA}.list_snapshots (digest, source, published_at, counts) "
                    "VALUES (:digest, :source, :published_at, CAST(:counts AS jsonb)) RETURNING snapshot_id")
_LATEST_DIGEST = sql(f"SELECT digest FROM {SCHEMA}.list_snapshots ORDER BY snapshot_id DESC LIMIT 1")
_LATEST_SNAPSHOT_ID = sql(f"SELECT max(snapshot_id) FROM {SCHEMA}.list_snapshots")
# The newest snapshot, and the rules its name index was built by (NULL without one).
_LATEST_SNAPSHOT = sql(f"SELECT s.snapshot_id, i.rules_version FROM {SCHEMA}.list_snapshots s "
                       f"LEFT JOIN {SCHEMA}.name_indexes i USING (snapshot_id) ORDER BY s.snapshot_id DESC LIMIT 1")
_DROP_NAME_INDEX = sql(f"DELETE FROM {SCHEMA}.name_indexes WHERE snapshot_id = :snapshot_id")
_ADD_NAME_INDEX = sql(f"INSERT INTO {SCHEMA}.name_indexes (snapshot_id, rules_version, names, keys) "
                      "VALUES (:snapshot_id, :rules_version, :names, :keys)")
# Name indexes are read for the latest snapshot only; the one before stays for a screening that began just
# before a load. Their rows go with them (ON DELETE CASCADE).
NAME_INDEXES_KEPT = 2
_PRUNE_NAME_INDEXES = sql(
    f"DELETE FROM {SCHEMA}.name_indexes WHERE snapshot_id NOT IN "
    f"(SELECT snapshot_id FROM {SCHEMA}.list_snapshots ORDER BY snapshot_id DESC LIMIT :kept)")


def _insert_records(conn: Connection, table: str, snapshot_id: int, rows: list[dict]) -> None:
    definition = _RECORDS[table]
    columns = ", ".join(part.split()[0] for part in definition.split(", "))
    conn.execute(
        sql(f"INSERT INTO {SCHEMA}.{table} (snapshot_id, {columns}) "
            f"SELECT :snapshot_id, {columns} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({definition})"),
        {"snapshot_id": snapshot_id, "rows": json.dumps(rows)},
    )


def store_snapshot(conn: Connection, parsed: ParsedLists, source: str, published_at: datetime | None) -> int | None:
    """Store the parsed files as a new snapshot; None when the latest snapshot is of these exact files.

    Compared with the latest only: files equal to an older snapshot (a delisting reverted) are a new
    version of the list. A transaction-scoped advisory lock makes concurrent loads take turns.
    """
    conn.execute(_LOCK_SNAPSHOTS)
    if latest_digest(conn) == parsed.digest:
        return None
    snapshot_id: int = conn.execute(_ADD_SNAPSHOT, {"digest": parsed.digest, "source": source,
                                                    "published_at": published_at,
                                                    "counts": json.dumps(parsed.counts)}).scalar_one()
    _insert_records(conn, "sdn_entries", snapshot_id, parsed.entries)
    _insert_records(conn, "sdn_aliases", snapshot_id, parsed.aliases)
    _insert_records(conn, "sdn_addresses", snapshot_id, parsed.addresses)
    _insert_records(conn, "listed_wallets", snapshot_id,
                    [{"address": address, "ent_num": ent_num} for address, ent_num in parsed.wallets.items()])
    store_name_index(conn, snapshot_id)
    return snapshot_id


def store_name_index(conn: Connection, snapshot_id: int) -> None:
    """Build the name index of a stored snapshot and store it, in place of one built by other rules; drop
    the indexes of older snapshots but the one before."""
    view = read_list_view(conn, snapshot_id)
    index = view.names
    conn.execute(_DROP_NAME_INDEX, {"snapshot_id": snapshot_id})
    conn.execute(_ADD_NAME_INDEX, {"snapshot_id": snapshot_id, "rules_version": rules_version(),
                                   "names": len(index), "keys": len(index.neighbours)})
    _insert_records(conn, "name_index_names", snapshot_id, [
        {"position": position, "ent_num": listed.ent_num, "alt_num": listed.alt_num, "name": listed.name,
         "entry_name": view.entries[listed.ent_num]["name"], "programs": view.entries[listed.ent_num]["programs"]}
        for position, listed in enumerate(index.names)])
    _insert_records(conn, "name_index_tokens", snapshot_id,
                    [{"token": token, "positions": positions} for token, positions in index.postings.items()])
    _insert_records(conn, "name_index_keys", snapshot_id,
                    [{"key": key, "tokens": tokens} for key, tokens in index.neighbours.items()])
    conn.execute(_PRUNE_NAME_INDEXES, {"kept": NAME_INDEXES_KEPT})


def ensure_name_index(conn: Connection) -> int | None:
    """Store the latest snapshot's name index when it has none built by this code's rules (a snapshot loaded
    before name indexes were stored, or matching rules changed by a deploy); the snapshot's id when built.
    Takes the snapshot lock: concurrent refreshes take turns, and the second finds the index built."""
    conn.execute(_LOCK_SNAPSHOTS)
    snapshot_id, rules = latest_snapshot(conn)
    if snapshot_id is None or rules == rules_version():
        return None
    store_name_index(conn, snapshot_id)
    return snapshot_id


def latest_digest(conn: Connection) -> str | None:
    """The digest of the newest snapshot's files, or None before the first load."""
    digest: str | None = conn.execute(_LATEST_DIGEST).scalar()
    return digest


def latest_snapshot_id(conn: Connection) -> int | None:
    """The newest loaded snapshot, or None before the first load."""
    return conn.execute(_LATEST_SNAPSHOT_ID).scalar()


def latest_snapshot(conn: Connection) -> tuple[int | None, str | None]:
    """The newest loaded snapshot and the rules its name index was built by; Nones before the first load."""
    row = conn.execute(_LATEST_SNAPSHOT).first()
    return (row.snapshot_id, row.rules_version) if row else (None, None)


# What screening needs of one snapshot, as one JSON document: its wallets, its entries, and its aliases
# (individuals' are kept). One statement and one json.loads: 0.023 s for the real list's 8,976 entries,
# against 0.085 s for three SELECTs whose 27,000 rows went through SQLAlchemy's row objects one by one.
# Each part reads one table by snapshot: joined to the entries in SQL, the aliases of a snapshot not yet
# analysed (the first, or one just loaded) were read by a nested loop over both, 6.7 s instead of 0.02 s.
_LIST_VIEW = sql(
    "SELECT json_build_object("
    "  'wallets', (SELECT coalesce(json_agg(json_build_array(address, ent_num) ORDER BY address), '[]')"
    "              FROM compliance.listed_wallets WHERE snapshot_id = :snapshot_id),"
    "  'entries', (SELECT coalesce(json_agg(json_build_array(ent_num, name, sdn_type, programs)"
    "                                       ORDER BY ent_num), '[]')"
    "              FROM compliance.sdn_entries WHERE snapshot_id = :snapshot_id),"
    "  'aliases', (SELECT coalesce(json_agg(json_build_array(ent_num, alt_num, name) ORDER BY ent_num, alt_num),"
    "                              '[]')"
    "              FROM compliance.sdn_aliases WHERE snapshot_id = :snapshot_id)"
    ")::text"
)


@collector_paused()
def read_list_view(conn: Connection, snapshot_id: int) -> ListView:
    """What screening needs of one snapshot: listed wallets, and individuals' names and aliases."""
    document = json.loads(conn.execute(_LIST_VIEW, {"snapshot_id": snapshot_id}).scalar_one())
    wallets = {address: ent_num for address, ent_num in document["wallets"]}
    entries = {ent_num: {"name": name, "sdn_type": sdn_type, "programs": programs}
               for ent_num, name, sdn_type, programs in document["entries"]}
    screened = [ent_num for ent_num, entry in entries.items() if entry["sdn_type"] == SCREENED_SDN_TYPE]
    names = [ListedName(ent_num, None, entries[ent_num]["name"]) for ent_num in screened]
    screened_set = set(screened)
    names += [ListedName(ent_num, alt_num, name) for ent_num, alt_num, name in document["aliases"]
              if ent_num in screened_set]
    return ListView(snapshot_id=snapshot_id, wallets=wallets, names=NameIndex(names), entries=entries)


# What one subject's screening can touch in one snapshot: its wallets that are listed, and the listed names
# its name can reach through the name index (every name holding a token that shares a blocking key with
# one of its own; NameIndex then finds among them what the whole index finds), with their entries' part
# of a hit's evidence. Each lookup goes by its key (`= ANY(ARRAY(...))`), whatever the planner knows.
_SUBJECT_VIEW = sql(
    "WITH blocks AS ("
    "  SELECT key, tokens FROM compliance.name_index_keys"
    "  WHERE key = ANY(CAST(:keys AS text[])) AND snapshot_id = :snapshot_id),"
    " names AS ("
    "  SELECT position, ent_num, alt_num, name, entry_name, programs FROM compliance.name_index_names"
    "  WHERE position = ANY(ARRAY("
    "    SELECT unnest(positions) FROM compliance.name_index_tokens"
    "    WHERE token = ANY(ARRAY(SELECT unnest(tokens) FROM blocks)) AND snapshot_id = :snapshot_id))"
    "  AND snapshot_id = :snapshot_id)"
    "SELECT json_build_object("
    "  'neighbours', (SELECT coalesce(json_object_agg(key, tokens), '{}') FROM blocks),"
    "  'names', (SELECT coalesce(json_agg(json_build_array(ent_num, alt_num, name, entry_name, programs)"
    "                                     ORDER BY position), '[]') FROM names),"
    "  'wallets', (SELECT coalesce(json_agg(json_build_array(address, ent_num)), '[]')"
    "              FROM compliance.listed_wallets"
    "              WHERE snapshot_id = :snapshot_id AND address = ANY(CAST(:wallets AS text[])))"
    ")::text"
)


@collector_paused()
def read_subject_view(conn: Connection, snapshot_id: int, subject: Mapping) -> ListView:
    """The part of a snapshot one subject's screening can touch (its name index must be stored)."""
    name, wallets = subject.get("name"), subject.get("wallet_addresses")
    keys = sorted(search_keys(name)) if isinstance(name, str) else []
    addresses = sorted({checksum_address(wallet) for wallet in wallets if isinstance(wallet, str)
                        and is_hex_address(wallet)}) if isinstance(wallets, list) else []
    document = json.loads(conn.execute(_SUBJECT_VIEW, {"snapshot_id": snapshot_id, "keys": keys,
                                                       "wallets": addresses}).scalar_one())
    names = NameIndex([ListedName(ent_num, alt_num, name) for ent_num, alt_num, name, _, _ in document["names"]],
                      document["neighbours"])
    # The index holds individuals' names only.
    entries = {ent_num: {"name": entry_name, "sdn_type": SCREENED_SDN_TYPE, "programs": programs}
               for ent_num, _, _, entry_name, programs in document["names"]}
    return ListView(snapshot_id=snapshot_id, wallets={address: ent_num for address, ent_num in document["wallets"]},
                    names=names, entries=entries)


class ListCache:
    """What screening reads of the latest snapshot: for one subject, the part its screening can touch, read
    through the stored name index (`for_subject`); for batches, the whole view, built once per instance and
    per snapshot (`latest`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view: ListView | None = None
        self._warned_about: int | None = None

    def for_subject(self, conn: Connection, subject: Mapping) -> ListView:
        """The newest snapshot's part that `subject` (a registration's identity fields) can touch; the whole
        view while the snapshot has no name index built by this code's rules (logged once per snapshot)."""
        snapshot_id, rules = latest_snapshot(conn)
        if snapshot_id is not None and rules == rules_version():
            return read_subject_view(conn, snapshot_id, subject)
        if snapshot_id is not None and self._warned_about != snapshot_id:
            self._warned_about = snapshot_id
            log.warning("the latest snapshot has no name index built by this code's matching rules; screening "
                        "builds the whole index in memory until refresh-sanctions stores one",
                        extra={"snapshot_id": snapshot_id, "stored_rules": rules, "rules": rules_version()})
        return self._whole(conn, snapshot_id)

    def latest(self, conn: Connection) -> ListView:
        """The newest snapshot's whole view; SanctionsListUnavailable before the first load."""
        return self._whole(conn, latest_snapshot_id(conn))

    def _whole(self, conn: Connection, snapshot_id: int | None) -> ListView:
        if snapshot_id is None:
            raise SanctionsListUnavailable("no sanctions list snapshot is loaded yet; run the sanctions-refresh job")
        with self._lock:
            if self._view is None or self._view.snapshot_id != snapshot_id:
                started = time.perf_counter()
                self._view = read_list_view(conn, snapshot_id)
                log.info("sanctions list loaded into memory",
                         extra={"snapshot_id": snapshot_id, "names": len(self._view.names),
                                "wallets": len(self._view.wallets),
                                "seconds": round(time.perf_counter() - started, 3)})
            return self._view
