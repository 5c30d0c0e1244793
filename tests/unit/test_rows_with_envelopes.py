"""The JSON documents relay and the outbox send to PostgreSQL splice each envelope's canonical text in
(serialized once, also the message body): the document must read back exactly as if serialized whole."""

from __future__ import annotations

import json

import pytest

from shared.envelope import Envelope
from shared.messaging.outbox import rows_with_envelopes, wire_bytes


def _envelope(text: str) -> Envelope:
    return Envelope(event_id=f"Probe:{text}", event_type="Probe", schema_version=1,
                    occurred_at="2026-12-03T00:00:00+00:00", correlation_id="c", causation_id=None,
                    payload={"text": text, "n": 10**30, "flag": True, "none": None, "nested": {"b": [1, "2"], "a": {}}})


@pytest.mark.parametrize("text", ["plain", 'quote " and \\ backslash', "ünïcode ✓ 😀", "}{][,:", "\u2028\n\t"])
def test_the_spliced_document_reads_as_the_whole_one(text):
    envelopes = [_envelope(text), _envelope(text + "2")]
    rows = [{"dedupe_key": e.dedupe_key, "attributes": {"k": text}} for e in envelopes]
    document = json.loads(rows_with_envelopes(rows, envelopes))
    assert document == [{**row, "envelope": e.to_json()} for row, e in zip(rows, envelopes, strict=True)]
    # The body published from memory is the one a republish of the stored envelope sends.
    assert [e.to_bytes() for e in envelopes] == [wire_bytes(row["envelope"]) for row in document]


def test_no_rows_is_an_empty_array():
    assert json.loads(rows_with_envelopes([], [])) == []
