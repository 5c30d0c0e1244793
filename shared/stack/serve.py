"""Serve one function locally the way functions-framework's CLI does, with HTTP keep-alive off.

Why not the plain CLI: the Pub/Sub emulator's push client keeps connections open and reuses them
after gunicorn has closed its side (gunicorn's keep-alive is 2 s, the local retry backoff 1-2 s);
a push written into such a half-closed connection is silently lost inside the emulator and never
redelivered. Answering every push with `Connection: close` avoids the race. GCP's push service does
not share the quirk, so deployed functions run under the standard entry point.

Usage: python -m shared.stack.serve --target NAME --source PATH --host H --port P
"""

from __future__ import annotations

import argparse

from functions_framework import create_app
from functions_framework._http import create_server


def main() -> None:
    """Load the function and serve it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(args.target, args.source)
    create_server(app, False, keepalive=0).run(args.host, args.port)


if __name__ == "__main__":
    main()
