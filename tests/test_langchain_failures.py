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
