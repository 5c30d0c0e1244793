"""refresh-sanctions: on each tick, load OFAC's files as a new snapshot if they changed, then fan the
rescreening of everyone behind the newest snapshot out into shards (shared/compliance/rescreen.py)."""

from __future__ import annotations

import logging
import time

from shared import topics
from shared.compliance import SCHEMA
from shared.compliance.lists import (
    DownloadedLists,
    download_lists,
    ensure_name_index,
    latest_digest,
    store_snapshot,
)
from shared.compliance.names import rules_version
from shared.compliance.ofac import ListFormatError, content_digest, parse_lists
from shared.compliance.rescreen import plan_rescreen
from shared.compliance.settings import SanctionsSourceSettings
from shared.db import connection, get_engine, sql, transaction
from shared.messaging import outbox
from shared.settings import Settings

log = logging.getLogger(__name__)
_RECORD_LOAD_FAILURE = sql(f"INSERT INTO {SCHEMA}.list_load_failures (digest, reason) VALUES (:digest, :reason)")


class SanctionsRefresher:
    """Download, load (a no-op for files already loaded), plan the rescreening behind the newest snapshot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = settings.part(SanctionsSourceSettings)

    def run_tick(self) -> dict:
        """One refresh; returns what it did (also logged)."""
        engine = get_engine(self.settings.database)
        self.publish_outbox()
        downloaded = download_lists(self.source)
        digest = content_digest(downloaded.files)
        snapshot_id = None
        with connection(engine) as conn:
            unchanged = latest_digest(conn) == digest
        if unchanged:
            # Most ticks: the files are the latest snapshot's, byte for byte. Parsing them (a quarter of a
            # second) would only find that out again; store_snapshot checks once more, under its lock.
            log.info("sanctions files unchanged; not parsed again", extra={"digest": digest})
        else:
            snapshot_id = self._load(downloaded, digest)
        with transaction(engine) as conn:
            rebuilt = ensure_name_index(conn)
        if rebuilt is not None:
            log.warning("name index of the latest snapshot rebuilt: it had none built by this code's matching rules",
                        extra={"snapshot_id": rebuilt, "rules": rules_version()})
        timeout = self.settings.publish_timeout_seconds
        with connection(engine) as conn:
            with conn.begin():
                plan = plan_rescreen(conn, self.source.rescreen_shard_users, self.source.rescreen_replan_seconds)
                staged = [] if plan is None else outbox.enqueue_many(
                    conn, SCHEMA, topics.RESCREEN_REQUESTS, [(request, {}) for request in plan.requests()], timeout)
            outbox.publish_staged(conn, SCHEMA, self.settings.project_id, timeout, staged)
        return {"snapshot_id": snapshot_id, "rescreen": plan}

    def _load(self, downloaded: DownloadedLists, digest: str) -> int | None:
        """Parse and store the files as a new snapshot; its id, or None when they are refused (the refusal
        is recorded) or another load stored them first."""
        engine = get_engine(self.settings.database)
        try:
            parsed = parse_lists(downloaded.files)
        except ListFormatError as exc:
            # Permanent for these bytes: record why and keep screening against the last good snapshot.
            with transaction(engine) as conn:
                conn.execute(_RECORD_LOAD_FAILURE, {"digest": digest, "reason": exc.reason})
            log.error("sanctions files refused; the last good snapshot stays in use", extra={"reason": exc.reason})
            return None
        with transaction(engine) as conn:
            snapshot_id = store_snapshot(conn, parsed, downloaded.source, downloaded.published_at)
        log.info("sanctions list snapshot loaded" if snapshot_id else "sanctions files unchanged",
                 extra={"snapshot_id": snapshot_id, "digest": parsed.digest, "counts": parsed.counts})
        return snapshot_id

    def publish_outbox(self) -> int:
        """Publish what the compliance outbox holds (the shard requests of a plan: 1,000 for a million users)."""
        return outbox.drain(get_engine(self.settings.database), SCHEMA, self.settings.project_id,
                            self.settings.publish_timeout_seconds, time.monotonic() + outbox.DRAIN_SECONDS)
