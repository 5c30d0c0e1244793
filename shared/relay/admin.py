"""Operator commands for relay, using the same settings as the deployed function.

    python -m shared.relay.admin status
    python -m shared.relay.admin rewind --to BLOCK [--republish]
    python -m shared.relay.admin backfill --from BLOCK

status    the checkpoint, the head, the confirmed target, the lag in blocks, the unpublished outbox.
rewind    move the checkpoint back to BLOCK; the next tick rescans from BLOCK + 1. Logs already
          relayed are not staged twice; with --republish their outbox rows after BLOCK are sent again
          (same event ids: consumers that have them drop them, consumers that lost them apply them).
backfill  rewind to BLOCK - 1, then scan and publish now, within the configured time budget.
"""

from __future__ import annotations

import argparse
import json
import time

from shared.db import get_engine, sql, transaction
from shared.logs import configure_logging
from shared.relay import SCHEMA
from shared.relay.service import Relay, get_reader, rewind_checkpoint, scan_lock, status
from shared.relay.settings import ChainSettings
from shared.settings import Settings


def rewind(settings: Settings, block: int, republish: bool) -> dict:
    """Move the checkpoint back to `block` (under the scan lock); optionally re-send later logs."""
    chain: ChainSettings = settings.part(ChainSettings)
    engine = get_engine(settings.database)
    reader = get_reader(chain.rpc_url, chain.escrow_address, chain.chain_id)
    with scan_lock(engine, chain) as acquired:
        if not acquired:
            raise SystemExit("relay is scanning right now; try again in a moment")
        with transaction(engine) as conn:
            rewound_from = rewind_checkpoint(conn, reader, chain, block)
            republished = 0
            if republish:
                republished = conn.execute(sql(
                    f"UPDATE {SCHEMA}.outbox SET published_at = NULL, publishing_until = NULL "
                    "WHERE (envelope->'payload'->>'block_number')::bigint > :block "
                    "AND envelope->'payload'->>'contract' ILIKE :contract"
                ), {"block": block, "contract": chain.escrow_address}).rowcount
    return {"rewound_from": rewound_from, "rewound_to": block, "republished": republished}


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m shared.relay.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status")
    rewind_parser = commands.add_parser("rewind")
    rewind_parser.add_argument("--to", type=int, required=True, dest="block")
    rewind_parser.add_argument("--republish", action="store_true")
    backfill_parser = commands.add_parser("backfill")
    backfill_parser.add_argument("--from", type=int, required=True, dest="block")
    args = parser.parse_args()
    configure_logging()
    settings = Settings.from_env(parts=[ChainSettings])
    chain = settings.part(ChainSettings)
    if args.command == "status":
        reader = get_reader(chain.rpc_url, chain.escrow_address, chain.chain_id)
        result = status(get_engine(settings.database), reader, chain)
    elif args.command == "rewind":
        result = rewind(settings, args.block, args.republish)
    else:
        started = time.monotonic()
        result = {**rewind(settings, args.block - 1, republish=False), **vars(Relay(settings).run_tick()),
                  "seconds": round(time.monotonic() - started, 2)}
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
