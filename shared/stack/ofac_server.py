"""A local stand-in for OFAC's download service: serves a directory of list files over HTTP.

    python -m shared.stack.ofac_server --port 18406 --directory .stack/demo/ofac

The stack fills the directory from shared/stack/data/ofac under OFAC's file names (SDN.CSV, ALT.CSV,
ADD.CSV, SDN_COMMENTS.CSV) plus the ETH address list; a test that "publishes" a list update edits a
file there. Responses carry Last-Modified, which the loader records as the list's publication time.
"""

from __future__ import annotations

import argparse
import functools
import shutil
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).with_name("data") / "ofac"
# OFAC's name -> the file in shared/stack/data/ofac
ADDRESS_LIST_NAME = "sanctioned_addresses_ETH.txt"
PUBLISHED_NAMES = {"SDN.CSV": "sdn.csv", "ALT.CSV": "alt.csv", "ADD.CSV": "add.csv",
                   "SDN_COMMENTS.CSV": "sdn_comments.csv", ADDRESS_LIST_NAME: ADDRESS_LIST_NAME}


def publish_initial_lists(directory: Path) -> None:
    """Fill `directory` with the real lists unless it already holds a (possibly updated) copy."""
    directory.mkdir(parents=True, exist_ok=True)
    for published, source in PUBLISHED_NAMES.items():
        if not (directory / published).exists():
            shutil.copyfile(DATA / source, directory / published)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", type=Path, required=True)
    args = parser.parse_args()
    publish_initial_lists(args.directory)
    handler = functools.partial(_QuietHandler, directory=str(args.directory))
    ThreadingHTTPServer(("127.0.0.1", args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
