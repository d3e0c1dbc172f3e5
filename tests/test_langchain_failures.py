"""What the LangChain layer keeps when things go wrong: a refresh whose live call fails, concurrent repeats of one
prompt, a damaged entry. Whole pytest sessions, ChatOpenAI over loopback HTTP."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import cassette_file, printed


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


FALLBACK = '''
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="{layer}")
def test_with_fallback(llm_cache):
    try:
        answer = ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0).invoke("hi").content
    except Exception as error:  # the app's own fallback: the test passes whatever the model did
        answer = "fallback " + type(error).__name__
    print("ANSWER", answer)
'''


@pytest.mark.parametrize(("layer", "status"), [("langchain", 500), ("langchain", 401), ("http", 500)])
def test_a_refresh_whose_live_call_fails_keeps_the_recorded_answer_through_a_prune(llm_pytester, server, env, layer, status):
    """The app falls back and the test passes; the refresh kept nothing new, so the recording it had stays its own."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=FALLBACK.format(base_url=server.base_url, layer=layer))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)

    server.fail_next(status)
    refreshed = llm_pytester.runpytest("-s", "--llm-mode=refresh", "--llm-prune")
    refreshed.assert_outcomes(passed=1)
    assert printed(refreshed, "ANSWER")[0].startswith("fallback")

    server.stop()
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")


SAMPLES = '''
import asyncio
import pytest
from langchain_openai import ChatOpenAI


def chat():
    return ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0)


@pytest.mark.llm_cache(layer="langchain", repeats="sequence")
def test_batch(llm_cache):
    answers = chat().batch(["Pick a number"] * 4, config={{"max_concurrency": 4}})
    print("BATCH", sorted(answer.content for answer in answers))


@pytest.mark.llm_cache(layer="langchain", repeats="sequence")
def test_gather(llm_cache):
    async def ask():
        return await asyncio.gather(*(chat().ainvoke("Pick a letter") for _ in range(4)))

    print("GATHER", sorted(answer.content for answer in asyncio.run(ask())))
'''


def test_concurrent_samples_of_one_prompt_each_get_a_recording(llm_pytester, server, env):
    """``repeats="sequence"``: four threads (or tasks) asking the same prompt at once record four samples, 0 to 3."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_samples=SAMPLES.format(base_url=server.base_url))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert len(server.requests) == 8
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        assert sorted(row[0] for row in db.execute("SELECT occurrence FROM interactions")) == [0, 0, 1, 1, 2, 2, 3, 3]

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=2)
    assert printed(replayed, "BATCH") == printed(recorded, "BATCH")
    assert printed(replayed, "GATHER") == printed(recorded, "GATHER")


CAUGHT = '''
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="langchain")
def test_one(llm_cache):
    try:
        print("ANSWER", ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0).invoke("hi").content)
    except Exception as error:  # the app's fallback must not turn a damaged recording into a pass
        print("CAUGHT", type(error).__name__)
'''


@pytest.mark.parametrize("body", ['[{"lc": 1, "type"', '[{"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {}}]', '{"x": 1}'])
def test_a_damaged_entry_fails_its_test_naming_it_and_the_fix_and_is_kept(llm_pytester, server, env, body):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=CAUGHT.format(base_url=server.base_url))
    llm_pytester.runpytest("-s", "--llm-mode=record").assert_outcomes(passed=1)
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        db.execute("UPDATE interactions SET body = ?", (body,))
        (fingerprint, occurrence), = db.execute("SELECT fingerprint, occurrence FROM interactions")
    server.stop()

    for mode in ("replay", "record"):
        result = llm_pytester.runpytest("-s", f"--llm-mode={mode}")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([
            f"*the LangChain entry {fingerprint}#{occurrence} in *llm_cache.sqlite3 (recorded by test_app.py::test_one) cannot be read*",
            f"*re-record it: pytest --llm-mode=refresh test_app.py::test_one (with the API key set), or delete it: llm-replay rm --cassette *llm_cache.sqlite3 {fingerprint}#{occurrence}*",
        ])
        assert "APIConnectionError" not in result.stdout.str() and "OpenAIConnectionError" not in result.stdout.str(), "never a live call"
        with sqlite3.connect(cassette_file(llm_pytester)) as db:
            assert [row[0] for row in db.execute("SELECT CAST(body AS TEXT) FROM interactions")] == [body], "kept as it was"
