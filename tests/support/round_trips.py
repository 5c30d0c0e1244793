"""Counting database round trips: pg8000 flushes its socket once for each request it then waits on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pg8000.core


@dataclass
class RoundTrips:
    """The round trips made while counting."""

    count: int = 0


@contextmanager
def counting_round_trips() -> Iterator[RoundTrips]:
    """Count pg8000's socket flushes (one per round trip) until the block ends."""
    trips = RoundTrips()
    flush = pg8000.core._flush

    def counting(sock):
        trips.count += 1
        return flush(sock)

    pg8000.core._flush = counting
    try:
        yield trips
    finally:
        pg8000.core._flush = flush
