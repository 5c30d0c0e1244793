"""relay.relayed_logs_by_time (chain_id, contract, relayed_at): the reconciler's recent chain logs, by index.

Every reconcile run (every 5 minutes) asks twice which escrows had a chain log relayed lately: within the
grace period (left alone, in flight) and within the last hour (read from the chain again). The only index
with the contract was by block position, so each question read every log the contract ever had:
relayed_logs is relay's record of every log and is never pruned. At 2M logs (2.9 GB) each took 0.55-0.70 s
warm, and the work grows with the history, not with what happened lately. relayed_at only grows, so the
index takes each new entry at its right edge.

Built CONCURRENTLY, as in 0018-0021.

Revision ID: 0022
Revises: 0021
"""

from shared.migrations.domains import create_indexes_concurrently, drop_indexes

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

INDEXES = {
    "relay.relayed_logs_by_time": "relay.relayed_logs (chain_id, contract, relayed_at)",
}


def upgrade() -> None:
    create_indexes_concurrently(INDEXES)


def downgrade() -> None:
    drop_indexes(INDEXES)
