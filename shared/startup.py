"""An instance's start: main.py's modules load with the cyclic garbage collector paused, then everything
they built is frozen out of the collector's reach.

main.py imports this module before any other of the platform's (functions-framework has already loaded
itself and Flask by then) and calls `loaded()` once its module-level objects exist.

Why (measured on this machine, the median of 5 fresh processes each, against the test stack):
- loading a function's main.py allocates a few hundred thousand objects that live as long as the
  instance (the libraries and the platform's own modules). With the collector on, those allocations
  set off collections that scan the growing heap again and again and free nothing: loading api's
  main.py took 0.344 s with it on and 0.316 s paused; settle's 0.321 and 0.294 s;
- afterwards, every full collection a request sets off would scan those objects once more: a relay tick
  of 10,000 logs, run in the bench's process, spent 0.15-0.17 s in full collections, 0.005-0.010 s once
  that process's modules were frozen (`gc.freeze()` moves them to a generation the collector never scans).
Nothing is lost: reference counting frees what the loading drops, and the objects frozen are those the
instance keeps until it stops.
"""

from __future__ import annotations

import gc

gc.disable()


def loaded() -> None:
    """main.py is loaded: freeze what it built and turn the collector back on."""
    gc.freeze()
    gc.enable()
