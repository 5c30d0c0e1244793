"""relay reads a large range in parts, the next part read while the caller stages the one before it."""

import threading

import pytest

from shared.relay import service
from shared.relay.service import _read_ahead


class RecordingReader:
    """Answers each eth_getLogs part with its bounds, and remembers the parts asked for."""

    def __init__(self) -> None:
        self.parts: list[tuple[int, int]] = []

    def logs(self, start: int, end: int) -> list:
        self.parts.append((start, end))
        return [(start, end)]


@pytest.mark.parametrize(("start", "end", "parts"), [
    (10, 10, [(10, 10)]),
    (10, 14, [(10, 14)]),  # a tick a minute: a few blocks, one call
    (0, 198, [(0, 198)]),  # fewer than two parts of READ_PART_MIN_BLOCKS
    (0, 399, [(0, 99), (100, 199), (200, 299), (300, 399)]),
    (1, 2000, [(1, 500), (501, 1000), (1001, 1500), (1501, 2000)]),  # a backfill's range
    (0, 400, [(0, 100), (101, 201), (202, 302), (303, 400)]),
])
def test_parts_cover_the_range_in_order(start, end, parts):
    reader = RecordingReader()
    assert list(_read_ahead(reader, start, end)) == [[part] for part in parts]
    assert reader.parts == parts
    assert len(parts) <= service.READ_PARTS


def test_the_next_part_is_read_while_the_caller_stages_the_one_before():
    reading_second = threading.Event()

    class Reader(RecordingReader):
        def logs(self, start, end):
            if self.parts:
                reading_second.set()
            return super().logs(start, end)

    seen = []
    for part in _read_ahead(Reader(), 0, 199):
        if not seen:
            assert reading_second.wait(5), "the second part must be under way before the caller asks for it"
        seen.append(part)
    assert seen == [[(0, 99)], [(100, 199)]]


def test_a_refused_part_reaches_the_caller_after_the_parts_before_it():
    class Refusing(RecordingReader):
        def logs(self, start, end):
            if self.parts:
                raise RuntimeError("refused")
            return super().logs(start, end)

    seen = []
    with pytest.raises(RuntimeError, match="refused"):
        for part in _read_ahead(Refusing(), 0, 199):
            seen.append(part)
    assert seen == [[(0, 99)]]
