"""How a sequence miss is worded where it ran: a pytest test, or a ``use_cassette`` block in a script."""

from __future__ import annotations

import pytest
from test_match_round2 import _ask

import llm_replay


def test_a_sequence_miss_outside_pytest_speaks_of_the_block_not_the_test(server, tmp_path):
    cassette = tmp_path / "sequence.sqlite3"
    _ask(server, cassette, "record", [1, 1])
    with pytest.raises(llm_replay.CassetteMiss) as missed:
        _ask(server, cassette, "replay", [1, 1, 1])
    message = str(missed.value)
    assert "identical request no. 3 in this use_cassette block (repeats='sequence'); the cassette holds 2 answers for it" in message
    assert "same request, but not at this occurrence: record this use_cassette block again to add the missing answers" in message
    assert "the test" not in message, message
