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


def test_the_sanctions_list_builds_pause_the_collector(monkeypatch):
    """Parsing the list's files runs with the collector off (the view's read is the same decorator)."""
    from shared.compliance import ofac
    from tests.support.compliance import real_lists

    states = []
    monkeypatch.setattr(ofac, "content_digest", lambda files: states.append(gc.isenabled()) or "digest")
    gc.enable()
    real_lists()
    assert states == [False] and gc.isenabled()
