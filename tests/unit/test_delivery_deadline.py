"""How long a delivery's drains may run: what the function's timeout leaves after a database outage wait
and a margin to answer in, from the handler's start; never less than outbox.DRAIN_SECONDS after it."""

import time

from shared.db import OUTAGE_WAIT_SECONDS
from shared.messaging import outbox
from shared.messaging.consumer import drain_until, work_seconds
from shared.topology import load_topology


def test_every_push_function_leaves_its_work_room_after_an_outage_wait():
    for function in load_topology().functions:
        if function.trigger_topics:
            assert work_seconds(function.timeout_seconds) > 0, function.name
            assert OUTAGE_WAIT_SECONDS + work_seconds(function.timeout_seconds) < function.timeout_seconds
    assert work_seconds(120) == 70  # assess-margin: a 1M-position crash's pass and its margin events


def test_drains_run_to_the_end_of_the_work_or_for_drain_seconds_whichever_is_later():
    now = time.monotonic()
    assert drain_until(now + 300) == now + 300
    late = drain_until(now - 5)  # the handler ran past the work's end, or no timeout is known
    assert now + outbox.DRAIN_SECONDS <= late <= time.monotonic() + outbox.DRAIN_SECONDS
    assert work_seconds(None) == 0
