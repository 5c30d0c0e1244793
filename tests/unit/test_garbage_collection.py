"""A paused collector is always given back as it was: after the block, after a failure, or left off."""

import gc

import pytest

from shared.garbage_collection import collector_paused


@pytest.fixture(autouse=True)
def _collector_restored():
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after():
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_failed_build_still_turns_the_collector_back_on():
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the database went away mid-read")
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_parsing_the_real_lists_sets_off_no_collection():
    """Parsing the OFAC files allocates tens of thousands of objects: with the collector running that
    means about a hundred collections; paused, only the one its next allocation sets off once it is back
    on (the view's read is checked the same way in tests/integration/test_sanctions_lists.py)."""
    from shared.compliance.ofac import OFAC_FILES, parse_lists
    from tests.support.compliance import OFAC_DATA

    files = {name: (OFAC_DATA / filename.lower()).read_bytes() for name, filename in OFAC_FILES.items()}
    gc.enable()
    before = [generation["collections"] for generation in gc.get_stats()]
    parsed = parse_lists(files)
    after = [generation["collections"] for generation in gc.get_stats()]
    assert sum(after) - sum(before) <= 1
    assert gc.isenabled() and len(parsed.entries) > 8000
