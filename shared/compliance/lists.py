"""Sanctions list snapshots: download OFAC's files, store them as one versioned snapshot, read one back.

A snapshot records the digest of its files; files equal to the latest snapshot's are not stored again.
It is written in one transaction (rows travel as one JSON parameter per table and are expanded by
`jsonb_to_recordset`, a few statements instead of thirty thousand round trips).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from shared.compliance import SCHEMA
from shared.compliance.names import ListedName, NameIndex
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
}


_LOCK_SNAPSHOTS = sql("SELECT pg_advisory_xact_lock(hashtext('compliance.list_snapshots'))")
_ADD_SNAPSHOT = sql(f"INSERT INTO {SCHEMA}.list_snapshots (digest, source, published_at, counts) "
                    "VALUES (:digest, :source, :published_at, CAST(:counts AS jsonb)) RETURNING snapshot_id")
_LATEST_DIGEST = sql(f"SELECT digest FROM {SCHEMA}.list_snapshots ORDER BY snapshot_id DESC LIMIT 1")
_LATEST_SNAPSHOT_ID = sql(f"SELECT max(snapshot_id) FROM {SCHEMA}.list_snapshots")


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
    return snapshot_id


def latest_digest(conn: Connection) -> str | None:
    """The digest of the newest snapshot's files, or None before the first load."""
    digest: str | None = conn.execute(_LATEST_DIGEST).scalar()
    return digest


def latest_snapshot_id(conn: Connection) -> int | None:
    """The newest loaded snapshot, or None before the first load."""
    return conn.execute(_LATEST_SNAPSHOT_ID).scalar()


# What screening needs of one snapshot, as one JSON document: its wallets, its entries, and the aliases of
# its individuals. One statement and one json.loads: 0.023 s for the real list's 8,976 entries, against
# 0.085 s for three SELECTs whose 27,000 rows went through SQLAlchemy's row objects one by one.
_LIST_VIEW = sql(
    "SELECT json_build_object("
    "  'wallets', (SELECT coalesce(json_agg(json_build_array(address, ent_num) ORDER BY address), '[]')"
    "              FROM compliance.listed_wallets WHERE snapshot_id = :snapshot_id),"
    "  'entries', (SELECT coalesce(json_agg(json_build_array(ent_num, name, sdn_type, programs)"
    "                                       ORDER BY ent_num), '[]')"
    "              FROM compliance.sdn_entries WHERE snapshot_id = :snapshot_id),"
    "  'aliases', (SELECT coalesce(json_agg(json_build_array(a.ent_num, a.alt_num, a.name)"
    "                                       ORDER BY a.ent_num, a.alt_num), '[]')"
    "              FROM compliance.sdn_aliases a JOIN compliance.sdn_entries e USING (snapshot_id, ent_num)"
    "              WHERE a.snapshot_id = :snapshot_id AND e.sdn_type = :screened)"
    ")::text"
)


@collector_paused()
def read_list_view(conn: Connection, snapshot_id: int) -> ListView:
    """What screening needs of one snapshot: listed wallets, and individuals' names and aliases."""
    document = json.loads(conn.execute(_LIST_VIEW, {"snapshot_id": snapshot_id,
                                                    "screened": SCREENED_SDN_TYPE}).scalar_one())
    wallets = {address: ent_num for address, ent_num in document["wallets"]}
    entries = {ent_num: {"name": name, "sdn_type": sdn_type, "programs": programs}
               for ent_num, name, sdn_type, programs in document["entries"]}
    names = [ListedName(ent_num, None, entry["name"]) for ent_num, entry in entries.items()
             if entry["sdn_type"] == SCREENED_SDN_TYPE]
    names += [ListedName(ent_num, alt_num, name) for ent_num, alt_num, name in document["aliases"]]
    return ListView(snapshot_id=snapshot_id, wallets=wallets, names=NameIndex(names), entries=entries)


class ListCache:
    """The latest snapshot's ListView, built once per instance and per snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view: ListView | None = None

    def latest(self, conn: Connection) -> ListView:
        """The newest snapshot's view; SanctionsListUnavailable before the first load."""
        snapshot_id = latest_snapshot_id(conn)
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
