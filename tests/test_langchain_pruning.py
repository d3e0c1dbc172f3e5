"""``--llm-prune`` on a partial run of LangChain-layer tests: it deletes only what the selected tests stopped using,
keeps every other test's entries (answers and recorded errors alike), and the suite still replays offline."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import cassette_file


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    """The inner sessions run in this process: the cache their test files set must not leak out."""
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


APP = '''
import openai
import pytest
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.llm_cache(layer="langchain")


def chat(model="gpt-4o-mini"):
    return ChatOpenAI(model=model, base_url="{base_url}", max_retries=0)


def test_a(llm_cache):
    chat().invoke("{question}")


def test_b(llm_cache):
    chat().invoke("Question B")
    "".join(chunk.content for chunk in chat().stream("Streamed B"))


def test_refused(llm_cache):
    with pytest.raises(openai.BadRequestError):
        chat("error-400").invoke("Refused C")
'''


def _prompts(pytester: pytest.Pytester) -> list[str]:
    """Each recording's prompt (a LangChain entry's last message, an HTTP recording's), in order."""
    with sqlite3.connect(cassette_file(pytester)) as db:
        rows = db.execute(
            "SELECT coalesce(json_extract(request, '$.body.prompt[#-1].kwargs.content'), json_extract(request, '$.body.messages[#-1].content')) "
            "FROM interactions"
        )
        return sorted(row[0] for row in rows)


def test_a_partial_prune_takes_only_what_the_selected_test_stopped_using(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url, question="Question A"))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=3)
    assert _prompts(llm_pytester) == ["Question A", "Question B", "Refused C", "Streamed B"]

    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url, question="Question A, reworded"))
    pruned = llm_pytester.runpytest("--llm-mode=record", "--llm-prune", "test_app.py::test_a")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 1 recording*"])
    assert _prompts(llm_pytester) == ["Question A, reworded", "Question B", "Refused C", "Streamed B"]

    # a replay prune of a test that still uses its entries (a recorded error included) deletes nothing
    llm_pytester.runpytest("--llm-mode=replay", "--llm-prune", "test_app.py::test_refused").assert_outcomes(passed=1)
    assert _prompts(llm_pytester) == ["Question A, reworded", "Question B", "Refused C", "Streamed B"]

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    llm_pytester.runpytest().assert_outcomes(passed=3)
