"""relay builds the next chunk's staging document while the database runs the current chunk's statement."""

import threading

import pytest

from shared.relay.checkpoint import _one_ahead


def test_the_next_item_is_built_while_the_caller_uses_the_current_one():
    building_second = threading.Event()

    def chunks():
        yield {"chunk": 1}
        building_second.set()
        yield {"chunk": 2}

    seen = []
    for item in _one_ahead(chunks()):
        if item == {"chunk": 1}:
            # Built ahead: the second chunk is under way before the caller asks for it.
            assert building_second.wait(5)
        seen.append(item)
    assert seen == [{"chunk": 1}, {"chunk": 2}]


def test_a_failure_building_a_chunk_reaches_the_caller_after_the_chunks_before_it():
    def chunks():
        yield {"chunk": 1}
        raise ValueError("a log the document cannot hold")

    seen = []
    with pytest.raises(ValueError, match="cannot hold"):
        for item in _one_ahead(chunks()):
            seen.append(item)
    assert seen == [{"chunk": 1}]
