"""``llm-replay audit`` and ``scrub`` over LangChain-layer entries: a key in each place such an entry holds data (the
prompt, the model's settings, the generations' text, tool call, metadata; the test id) is reported, and scrub removes
it without damaging the entry: the session replays it in CI afterwards. ChatOpenAI over the loopback fake, in whole
pytest sessions."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import cassette_file, printed
from test_stream_secrets import ANTHROPIC_KEY

from llm_replay.cli import main

APP = '''
import pytest
from langchain_openai import ChatOpenAI

KEY = "{key}"
TOOLS = [{{"type": "function", "function": {{"name": "note", "parameters": {{"type": "object", "properties": {{"q": {{"type": "string"}}}}}}}}}}]


def chat(**headers):
    return ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", api_key="{api_key}", max_retries=0,
                      model_kwargs={{"user": KEY}}, default_headers={{"x-fake-answer": "your key: " + KEY, **headers}})


@pytest.mark.parametrize("who", [KEY], ids=[KEY])
@pytest.mark.llm_cache(layer="langchain")
def test_chat(llm_cache, who):
    answer = chat().invoke("repeat my key " + who)
    print("ANSWER", answer.content, "|", answer.response_metadata.get("planted"), "|", answer.additional_kwargs.get("planted"))


@pytest.mark.llm_cache(layer="langchain")
def test_tool(llm_cache):
    print("TOOL", chat().bind_tools(TOOLS).invoke("note my key " + KEY).tool_calls[0]["args"]["q"])
'''


def _plant_in_generations(cassette) -> None:
    """A key where the model's answer may carry one the fake does not write: its generation_info, response_metadata
    and additional_kwargs."""
    with sqlite3.connect(cassette) as db:
        for fingerprint, occurrence, body in db.execute("SELECT fingerprint, occurrence, body FROM interactions").fetchall():
            generations = json.loads(body)
            for generation in generations:
                generation["kwargs"]["generation_info"]["planted"] = ANTHROPIC_KEY
                message = generation["kwargs"]["message"]["kwargs"]
                message["response_metadata"]["planted"] = ANTHROPIC_KEY
                message["additional_kwargs"]["planted"] = ANTHROPIC_KEY
            db.execute("UPDATE interactions SET body = ? WHERE fingerprint = ? AND occurrence = ?", (json.dumps(generations), fingerprint, occurrence))


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


def test_a_key_anywhere_in_a_langchain_entry_is_reported_and_scrubbed_and_the_entry_still_replays(llm_pytester, server, capsys):
    llm_pytester.makepyfile(test_app=APP.format(key=ANTHROPIC_KEY, base_url=server.base_url, api_key=server.api_key))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert printed(recorded, "ANSWER") == [f"your key: {ANTHROPIC_KEY} | None | None"]
    assert printed(recorded, "TOOL") == [f"your key: {ANTHROPIC_KEY}"]
    cassette = cassette_file(llm_pytester)
    _plant_in_generations(cassette)

    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    out = capsys.readouterr().out
    for column in ("request (JSON, keys included)", "body (JSON, keys included)", "tests (JSON)"):
        assert f"column {column}: Anthropic API key 'sk-ant…NmAA'" in out, (column, out)
    assert main(["scrub", str(cassette)]) == 0
    assert ANTHROPIC_KEY.encode() not in cassette.read_bytes()

    server.stop()
    llm_pytester.makepyfile(test_app=APP.format(key=ANTHROPIC_KEY, base_url=server.base_url, api_key=server.api_key))
    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=2)
    assert printed(replayed, "ANSWER") == ["your key: <scrubbed> | <scrubbed> | <scrubbed>"]
    assert printed(replayed, "TOOL") == ["your key: <scrubbed>"]
