"""refresh-sanctions: on each tick, load OFAC's files as a new snapshot if they changed, then rescreen."""

from __future__ import annotations

import logging

from shared.compliance.lists import download_lists, store_snapshot
from shared.compliance.ofac import ListFormatError, content_digest, parse_lists
from shared.compliance.service import ComplianceService
from shared.compliance.tables import SCHEMA, list_load_failures
from shared.db import get_engine, transaction
from shared.messaging import outbox
from shared.settings import Settings

log = logging.getLogger(__name__)


class SanctionsRefresher:
    """Download, load (a no-op for files already loaded), rescreen everyone behind the newest snapshot."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = settings.require_sanctions_source()
        self.compliance = ComplianceService(settings.require_compliance())

    def run_tick(self) -> dict:
        """One refresh; returns what it did (also logged)."""
        engine = get_engine(self.settings.database)
        self.publish_outbox()
        downloaded = download_lists(self.source)
        snapshot_id = None
        try:
            parsed = parse_lists(downloaded.files)
        except ListFormatError as exc:
            # Permanent for these bytes: record why and keep screening against the last good snapshot.
            with transaction(engine) as conn:
                conn.execute(list_load_failures.insert().values(digest=content_digest(downloaded.files),
                                                                reason=exc.reason))
            log.error("sanctions files refused; the last good snapshot stays in use", extra={"reason": exc.reason})
        else:
            with transaction(engine) as conn:
                snapshot_id = store_snapshot(conn, parsed, downloaded.source, downloaded.published_at)
            log.info("sanctions list snapshot loaded" if snapshot_id else "sanctions files unchanged",
                     extra={"snapshot_id": snapshot_id, "digest": parsed.digest, "counts": parsed.counts})
        rescreened = self.compliance.rescreen_all(engine, self.publish_outbox,
                                                  self.source.rescreen_time_budget_seconds)
        log.info("rescreening done", extra={"rescreened": rescreened})
        return {"snapshot_id": snapshot_id, "rescreened": rescreened}

    def publish_outbox(self) -> int:
        """Publish the results the rescreening staged."""
        return outbox.publish_pending(get_engine(self.settings.database), SCHEMA, self.settings.project_id,
                                      self.settings.publish_timeout_seconds)
