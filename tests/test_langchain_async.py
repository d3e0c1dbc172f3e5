"""A strict miss under LangChain's async API: ``agenerate`` turns any BaseException its calls raised into an
AttributeError of its own (it reads ``.generations`` from what is no ``Exception``), so the failure must still lead
with llm_replay's miss message, at either layer. Whole pytest sessions, ChatOpenAI over loopback HTTP."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    """The inner sessions run in this process: the cache their test files set must not leak out."""
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


ASYNC = '''
import asyncio
import httpx
import pytest
from langchain_openai import ChatOpenAI


def chat():  # a client of its own: langchain-openai's shared one belongs to the event loop of the test before
    return ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0, http_async_client=httpx.AsyncClient())


@pytest.mark.llm_cache(layer="{layer}")
def test_ainvoke(llm_cache):
    asyncio.run(chat().ainvoke("{prompt}"))


@pytest.mark.llm_cache(layer="{layer}")
def test_abatch(llm_cache):
    asyncio.run(chat().abatch(["{prompt} once", "{prompt} twice"]))
'''


@pytest.mark.parametrize(("layer", "explained"), [("langchain", "*no recording for this LangChain cache lookup*"), ("http", "no recording for this request*")])
def test_an_async_strict_miss_fails_with_the_miss_message(llm_pytester, server, env, layer, explained):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASYNC.format(base_url=server.base_url, layer=layer, prompt="Recorded"))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    llm_pytester.runpytest().assert_outcomes(passed=2)
    llm_pytester.makepyfile(test_app=ASYNC.format(base_url=server.base_url, layer=layer, prompt="Changed"))
    missed = llm_pytester.runpytest("-p", "no:randomly")
    missed.assert_outcomes(failed=2)
    missed.stdout.fnmatch_lines(
        [
            "*_ test_ainvoke _*",
            "llm_replay.CassetteMiss (the code under test raised another error in its place, below):",
            explained,
            "*to record it: pytest --llm-mode=record test_app.py::test_ainvoke*",
            "*AttributeError: 'CassetteMiss' object has no attribute 'generations'",
            "*_ test_abatch _*",
            "llm_replay.CassetteMiss (the code under test raised another error in its place, below):",
            explained,
            "*to record it: pytest --llm-mode=record test_app.py::test_abatch*",
        ]
    )
