"""The LangChain layer as users meet it in pytest: the fixture swaps LangChain's global cache in and back
out, records, replays with the server stopped, and fails a strict miss with LangChain-level differences."""

from __future__ import annotations

import pytest
from conftest import cassette_file, printed, write_ini

CHAT_TESTS = '''
import pytest
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.caches import InMemoryCache as LangChainInMemoryCache
from langchain_openai import ChatOpenAI

BASE_URL = "{base_url}"
USERS_CACHE = LangChainInMemoryCache()
set_llm_cache(USERS_CACHE)  # the app's own global cache, which the fixture must put back


def chat(**settings):
    return ChatOpenAI(base_url=BASE_URL, max_retries=0, **{{"model": "gpt-4o-mini", "temperature": 0.7, **settings}})


@pytest.mark.llm_cache(layer="langchain")
def test_capital(llm_cache):
    assert type(get_llm_cache()).__module__ == "llm_replay.langchain"
    answer = chat().invoke("What is the capital of France?")
    again = chat().invoke("What is the capital of France?")
    print("ANSWER", answer.content, again.content)
    print("COUNTS", llm_cache.replayed, llm_cache.recorded)


@pytest.mark.llm_cache(layer="langchain")
def test_fails_after_using_the_cache(llm_cache):
    chat().invoke("What is the capital of France?")
    assert False, "a failing test still gets the app's cache back"


def test_users_cache_is_back():
    assert get_llm_cache() is USERS_CACHE
'''


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    """The inner sessions run in this process: the cache their test files set must not leak out."""
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


def _write(pytester: pytest.Pytester, base_url: str, extra: str = "") -> None:
    pytester.makepyfile(test_chat=CHAT_TESTS.format(base_url=base_url) + extra)



def test_langchain_layer_records_replays_offline_and_explains_a_miss(llm_pytester, server, env):
    _write(llm_pytester, server.base_url)
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2, failed=1)
    assert len(server.requests) == 1, "the LangChain layer answered the repeat and the second test"
    recorded.stdout.fnmatch_lines([
        "*COUNTS 1 1",
        "*AssertionError: a failing test still gets the app's cache back",
        "llm_replay: 2 replayed, 1 recorded, 0 missed in 2 tests (mode record, cassette cassettes/llm_cache.sqlite3)",
    ])
    assert printed(recorded, "ANSWER")[0].endswith("#1 echo[0]: What is the capital of France? #1")

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    _write(llm_pytester, server.base_url, extra='''

@pytest.mark.llm_cache(layer="langchain")
def test_changed_settings(llm_cache):
    chat(model="gpt-4o", temperature=0.2).invoke("What is the capital of Spain?")
''')
    replayed = llm_pytester.runpytest("-s", "-p", "no:randomly")
    replayed.assert_outcomes(passed=2, failed=2)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
    replayed.stdout.fnmatch_lines([
        "*llm_replay.CassetteMiss: no recording for this LangChain cache lookup (mode 'replay': the model is not called)",
        "*llm:       ChatOpenAI, model gpt-4o",
        "*prompt:    (human) What is the capital of Spain?",
        "*cassette:  *cassettes/llm_cache.sqlite3 (1 LangChain entry)",
        # the test that replayed the answer in the record run owns it too (docs/cassettes-and-git.md)
        "*closest entry: ChatOpenAI, model gpt-4o-mini, recorded * by test_chat.py::test_capital, test_chat.py::test_fails_after_using_the_cache:",
        '*model_name differs: "gpt-4o-mini" -> "gpt-4o"',
        "*temperature differs: 0.7 -> 0.2",
        '*prompt[[]0].content differs: "What is the capital of France?" -> "What is the capital of Spain?"',
        "*to record it: pytest --llm-mode=record test_chat.py::test_changed_settings  (with the API key set)",
        "*llm_replay: 3 replayed, 0 recorded, 1 missed in 3 tests*",
    ])
    assert "APIConnectionError" not in replayed.stdout.str(), "the miss is raised before the model is called"


def test_scope_test_and_ini_layers_and_off(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    write_ini(llm_pytester, "llm_layers = langchain\nllm_scope = test\n")
    llm_pytester.makepyfile(test_scoped=f'''
from langchain_core.globals import get_llm_cache
from langchain_openai import OpenAI

BEFORE = get_llm_cache()

def ask():
    return OpenAI(model="gpt-3.5-turbo-instruct", n=2, best_of=2, base_url="{server.base_url}").invoke("Tell me a joke")

def test_one(llm_cache):
    assert ask() == ask()
    assert (llm_cache.recorded, llm_cache.replayed, llm_cache.cassette.path) == (1, 1, None)
    assert type(get_llm_cache()).__name__ == "RecorderCache"

def test_two(llm_cache):
    ask()
    assert llm_cache.recorded == 1, "scope='test': a fresh in-memory cache"

def test_without_fixture():
    assert get_llm_cache() is BEFORE
''')
    result = llm_pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert len(server.requests) == 2
    assert not cassette_file(llm_pytester).exists()

    off = llm_pytester.runpytest("--llm-mode=off", "-k", "two or without")
    off.assert_outcomes(passed=1, failed=1)
    off.stdout.fnmatch_lines(["*test_two*", "E       assert 0 == 1"])  # off records nothing
    assert len(server.requests) == 3, "off leaves LangChain's cache alone: the call went live"


def test_both_layers_record_both_and_langchain_misses_fall_to_http(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_both=f'''
import pytest
from langchain_openai import ChatOpenAI

@pytest.mark.llm_cache(layer="http,langchain")
def test_both(llm_cache):
    print("ANSWER", ChatOpenAI(model="gpt-4o-mini", base_url="{server.base_url}", max_retries=0).invoke("hi").content)
    print("HOSTS", sorted(i.request.host.split(":")[0] for i in llm_cache.interactions))
''')
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*HOSTS [[]'http', 'langchain']"])

    # An HTTP-only cassette (the LangChain entry deleted) still replays under both layers.
    import sqlite3
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        db.execute("DELETE FROM interactions WHERE request LIKE '%\"host\":\"langchain://\"%'")
    server.stop()
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
    replayed.stdout.fnmatch_lines(["*HOSTS [[]'http']", "llm_replay: 1 replayed, 0 recorded, 0 missed*"])


def test_bad_layer_and_missing_langchain_are_clear(llm_pytester, env):
    llm_pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.llm_cache(layer="langchian")
def test_typo(llm_cache):
    pass
''')
    result = llm_pytester.runpytest()
    assert result.ret != 0
    assert "layer in @pytest.mark.llm_cache on test_bad.py::test_typo: unknown layer 'langchian'; use one or both of: http, langchain" in result.stdout.str() + result.stderr.str()

    write_ini(llm_pytester, "llm_layers = http grpc\n")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*layer in ini option llm_layers: unknown layer 'grpc'; use one or both of: http, langchain*"])


def test_refresh_rerecords_and_sequence_keeps_each_sample(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_samples=f'''
import pytest
from langchain_openai import ChatOpenAI

@pytest.mark.llm_cache(layer="langchain", repeats="sequence")
def test_three_samples(llm_cache):
    chat = ChatOpenAI(model="gpt-4o-mini", base_url="{server.base_url}", max_retries=0)
    print("ANSWER", [chat.invoke("Pick a number").content for _ in range(3)])
''')
    recorded = llm_pytester.runpytest("-s")
    recorded.assert_outcomes(passed=1)
    assert len(server.requests) == 3 and len(set(printed(recorded, "ANSWER")[0].split(","))) == 3

    refreshed = llm_pytester.runpytest("-s", "--llm-mode=refresh")
    refreshed.assert_outcomes(passed=1)
    refreshed.stdout.fnmatch_lines(["llm_replay: 0 replayed, 3 recorded, 0 missed*"])
    assert len(server.requests) == 6 and printed(refreshed, "ANSWER") != printed(recorded, "ANSWER")

    server.stop()
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "ANSWER") == printed(refreshed, "ANSWER"), "the three refreshed samples, in order"


STREAMING = '''
import asyncio
import pytest
from langchain_openai import ChatOpenAI


def chat():
    return ChatOpenAI(base_url="{base_url}", max_retries=0, model="gpt-4o-mini")


@pytest.mark.llm_cache(layer="langchain")
def test_stream_and_astream(llm_cache):
    streamed = "".join(chunk.content for chunk in chat().stream("Stream me a haiku"))

    async def collect():
        return "".join([chunk.content async for chunk in chat().astream("Stream me a limerick")])

    cached = chat().invoke("Not streamed")
    print("STREAMED", streamed, "|", asyncio.run(collect()), "|", cached.content)
    print("COUNTS", llm_cache.replayed, llm_cache.recorded)
'''


def test_langchain_layer_alone_records_and_replays_stream_and_astream_offline(llm_pytester, server, env):
    """``stream``/``astream`` skip LangChain's cache: the HTTP layer beneath answers them, and replay stays offline."""
    llm_pytester.makepyfile(test_stream=STREAMING.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    assert len(server.requests) == 3 and printed(recorded, "COUNTS") == ["0 3"], "two streams over HTTP, one invoke in the cache"

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "STREAMED") == printed(recorded, "STREAMED")
    assert "Stream me a haiku" in printed(replayed, "STREAMED")[0]
    assert printed(replayed, "COUNTS") == ["3 0"] and len(server.requests) == 3


VERIFIED = '''
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="{layer}")
def test_capital(llm_cache):
    print("ANSWER", ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0).invoke("Capital of France?").content)
'''


@pytest.mark.parametrize("layer", ["langchain", "http,langchain"])
def test_verify_says_that_langchain_hits_were_not_compared(llm_pytester, server, env, layer):
    """``--llm-mode=verify`` promises a live comparison; a LangChain cache hit cannot have one (the cache cannot call the
    model), so the run says so instead of passing as if the answers had been checked."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=VERIFIED.format(base_url=server.base_url, layer=layer))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    verified = llm_pytester.runpytest("-s", "--llm-mode=verify")
    verified.assert_outcomes(passed=1, warnings=1)
    assert printed(verified, "ANSWER") == printed(recorded, "ANSWER"), "the test sees the recording"
    verified.stdout.fnmatch_lines([
        "*LangChainNotVerified: llm_replay verify: LangChain cache hits were replayed without a live comparison "
        "(the LangChain layer cannot call the model itself); to verify these calls, run them with layer='http'*",
    ])
    assert "llm_replay drift" not in verified.stdout.str()
