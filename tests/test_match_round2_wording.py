"""How a sequence miss is worded where it ran: a pytest test, or a ``use_cassette`` block in a script; and a LangChain
lookup's place counted from one, as a request's is."""

from __future__ import annotations

import openai
import pytest
from langchain_openai import OpenAI
from test_match_round2 import _ask

import llm_replay
from llm_replay.engine.recorder import Recorder
from llm_replay.engine.settings import Mode
from llm_replay.layers.activation import activated
from llm_replay.stores.sqlite import SQLiteCache


def test_a_sequence_miss_outside_pytest_speaks_of_the_block_not_the_test(server, tmp_path):
    cassette = tmp_path / "sequence.sqlite3"
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    _ask(client, cassette, "record", [1, 1])
    with pytest.raises(llm_replay.CassetteMiss) as missed:
        _ask(client, cassette, "replay", [1, 1, 1])
    message = str(missed.value)
    assert "identical request no. 3 in this use_cassette block (repeats='sequence'); the cassette holds 2 answers for it" in message
    assert "same request, but not at this occurrence: record this use_cassette block again to add the missing answers" in message
    assert "the test" not in message, message


def test_a_sequence_miss_counts_the_answers_held_in_every_spelling(server, tmp_path):
    """Places are shared by spellings, so the answers held are too: recorded at ``0``, asked at ``0.0`` a third time,
    the cassette holds 2 answers for it (it said 0: it counted the asked spelling's key only)."""
    cassette = tmp_path / "sequence.sqlite3"
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    _ask(client, cassette, "record", [0, 0])
    with pytest.raises(llm_replay.CassetteMiss, match=r"identical request no\. 3 in this use_cassette block \(repeats='sequence'\); the cassette holds 2 answers for it"):
        _ask(client, cassette, "replay", [0, 0.0, 0.0])


@pytest.fixture
def _langchain_global_cache_restored():
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


@pytest.mark.usefixtures("_langchain_global_cache_restored")
def test_a_langchain_sequence_miss_counts_lookups_from_one(server, tmp_path):
    """It said "occurrence 2 of this lookup" for the third lookup (the place's index), without the answers held."""

    def invoke(mode: Mode, times: int) -> None:
        store = SQLiteCache(tmp_path / "lookups.sqlite3")
        llm = OpenAI(model="gpt-3.5-turbo-instruct", base_url=server.base_url, api_key=server.api_key, max_retries=0)
        try:
            with activated(Recorder(store, mode, repeats="sequence", test_id="test_app.py::test_ideas"), layers=("langchain",)):
                for _ in range(times):
                    llm.invoke("Name a cat")
        finally:
            store.close()

    invoke(Mode.RECORD, 2)
    with pytest.raises(llm_replay.CassetteMiss, match=r"identical lookup no\. 3 in the test \(repeats='sequence'\); the cassette holds 2 answers for it"):
        invoke(Mode.REPLAY, 3)
