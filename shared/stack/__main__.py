"""CLI: python -m shared.stack up | down | status | demo | reconcile | relay-admin ARGS... | trace ESCROW

relay-admin runs `python -m shared.relay.admin ARGS` with the stack relay's own settings,
e.g. `python -m shared.stack relay-admin status`. trace prints one escrow's path through every stage
(chain_id:contract:escrow_id), see shared/ops/trace.py. reconcile runs the reconciler once and prints
what it checked, what drifted and what it repaired (shared/reconcile/).
"""

from __future__ import annotations

import argparse
import os

from shared.stack.layout import DEMO_LAYOUT


def main() -> None:
    """Parse the command and run it on the demo stack."""
    parser = argparse.ArgumentParser(prog="python -m shared.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "demo", "reconcile", "relay-admin",
                                                    "trace"])
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    # The Pub/Sub client library honours this variable; the stack's own publishes go to the emulator.
    os.environ["PUBSUB_EMULATOR_HOST"] = DEMO_LAYOUT.pubsub_host

    from shared.stack.stack import Stack

    stack = Stack(DEMO_LAYOUT, run_scheduler=True)
    if args.command == "up":
        state = stack.up()
        for name, address, status in stack.status():
            print(f"{name:18} {status:5} {address}")
        print(f"escrow contract {state['escrow_address']}; logs in {DEMO_LAYOUT.logs}")
    elif args.command == "down":
        stack.down()
        print("stack stopped")
    elif args.command == "status":
        for name, address, status in stack.status():
            print(f"{name:18} {status:5} {address}")
    elif args.command == "trace":
        import sqlalchemy

        from shared.ops.trace import escrow_trace, format_trace, parse_key

        try:
            key = parse_key(args.arguments[0])
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        engine = sqlalchemy.create_engine(DEMO_LAYOUT.database_url())
        with engine.connect() as conn:
            stages = escrow_trace(conn, *key)
        print(format_trace(stages) if stages else f"no escrow {args.arguments[0]}")
    elif args.command == "reconcile":
        run = stack.reconcile()
        print(f"checked {run['checked']}; redriven {run['redriven']}, held {run['held']}")
        for drift in run["found"]:
            print(f"drift {drift['kind']:20} {drift['key']}: {drift['repair'] or 'left for a person'}")
        print("clean" if not run["found"] and not run["held"] else f"{len(run['found'])} drifts")
    elif args.command == "relay-admin":
        completed = stack.run_relay_admin(args.arguments)
        print(completed.stdout + completed.stderr, end="")
        raise SystemExit(completed.returncode)
    else:
        from shared.stack.demo import run_demo

        # The demo ticks by hand; the Scheduler starts once it is done, so the stack left up runs like GCP.
        stack.stop_scheduler()
        run_demo(Stack(DEMO_LAYOUT))
        stack.up()
        print("the local Scheduler now ticks the stack on the manifest's cron schedules (make down stops it)")


if __name__ == "__main__":
    main()
