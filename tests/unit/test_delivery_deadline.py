"""How long a delivery's drains may run: what the function's timeout leaves after a database outage wait
and a margin to answer in, from the handler's start; never less than outbox.DRAIN_SECONDS after it."""

import time

from shared.db import OUTAGE_WAIT_SECONDS
from shared.messaging import outbox
from shared.messaging.consumer import ANSWER_MARGIN_SECONDS, drain_until, work_seconds
from shared.topology import load_topology


def test_the_work_of_a_delivery_ends_before_its_function_times_out_even_after_an_outage_wait():
    for function in load_topology().functions:
        work = work_seconds(function.timeout_seconds)
        assert OUTAGE_WAIT_SECONDS + work + ANSWER_MARGIN_SECONDS == function.timeout_seconds, function.name
    assert work_seconds(120) == 70  # assess-margin: a 1M-position crash's pass and its margin events


def test_drains_run_to_the_end_of_the_work_or_for_drain_seconds_whichever_is_later():
    now = time.monotonic()
    assert drain_until(now + 300) == now + 300
    late = drain_until(now - 5)  # the handler ran past the work's end, or no timeout is known
    assert now + outbox.DRAIN_SECONDS <= late <= time.monotonic() + outbox.DRAIN_SECONDS
    assert work_seconds(None) == 0
