"""Two reads that scanned a whole table get an index: notify's corrections, and a user's reviews.

- notify.deliveries_by_correlation (correlation_id). When a reorganisation voids an escrow, notify
  retracts the alerts it sent about it (shared/notify/service.py, `_plan_corrections`): the deliveries
  of the escrow's correlation id. No index had that column, so each correction read every delivery kept
  (90 days of every alert, under 0018). The on-call trace (shared/ops/trace.py) reads them the same way.
- compliance.reviews_by_user (user_id, applied_at). The api's compliance history of a user
  (shared/api/compliance_queries.py) reads the user's reviews in the order applied: every call read
  every review ever made, which the auditors keep for good.

Found by the plan sweep of the e2e suite (enable_seqscan = off, auto_explain), listed as left alone in the
last note. Built CONCURRENTLY, as in 0018-0020.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

from shared.migrations.domains import create_indexes_concurrently

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

INDEXES = {
    "notify.deliveries_by_correlation": "notify.deliveries (correlation_id)",
    "compliance.reviews_by_user": "compliance.reviews (user_id, applied_at)",
}


def upgrade() -> None:
    create_indexes_concurrently(INDEXES)


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
