"""Pausing Python's cyclic garbage collector while a bulk build allocates many small acyclic objects.

Allocating some hundred thousand objects (parsed rows, name tokens, postings) sets off full collections
that scan the whole heap, libraries included, again and again, finding nothing to free. Measured on
the OFAC list: parsing its files took 0.24 s with the collector on and 0.12 s paused; building the
screening view of a snapshot (10,892 names) 0.65 s and 0.38 s. Pausing loses nothing: reference
counting still frees what the build drops, and the collector runs as usual afterwards.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the block (or the decorated function), then as it was before.

    Two threads pausing at once can only end with it on: the one that found it on turns it back on (the
    other may then finish its build with the collector running, slower but correct)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
