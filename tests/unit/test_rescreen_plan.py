"""Rescreening shards (pure): every rescreen key in exactly one shard, and the requests that carry them."""

import pytest

from shared.compliance import RESCREEN_KEYS
from shared.compliance.rescreen import RescreenPlan, shard_ranges
from shared.events import validate_payload


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 1000, 65535, 65536])
def test_the_shards_cover_every_key_exactly_once(shards):
    ranges = shard_ranges(shards)
    assert len(ranges) == shards
    assert ranges[0][0] == 0 and ranges[-1][1] == RESCREEN_KEYS
    assert all(low < high for low, high in ranges)
    assert all(previous[1] == current[0] for previous, current in zip(ranges, ranges[1:], strict=False))


@pytest.mark.parametrize("shards", [0, -1, RESCREEN_KEYS + 1])
def test_an_impossible_number_of_shards_is_refused(shards):
    with pytest.raises(ValueError, match="shards must be"):
        shard_ranges(shards)


def test_each_request_has_a_deterministic_id_and_a_valid_payload():
    requests = RescreenPlan(snapshot_id=7, generation=2, shards=3, users_behind=2500).requests()
    assert [r.event_id for r in requests] == [f"RescreenRequested:7:2:{n}" for n in range(3)]
    for request in requests:
        assert validate_payload(request.event_type, 1, request.payload, request.event_id) == request.payload
    assert [(r.payload["key_from"], r.payload["key_to"]) for r in requests] == shard_ranges(3)
