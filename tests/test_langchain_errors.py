"""The LangChain layer when the model's provider answers with an error: the error is recorded and replays offline,
and what the app does next (a stream, another call) is recorded and replayed as usual. Whole pytest sessions,
ChatOpenAI over loopback HTTP, replayed strictly with the server stopped."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import cassette_file, printed


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    """The inner sessions run in this process: the cache their test files set must not leak out."""
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


def _record_then_replay_offline(pytester: pytest.Pytester, server, env, source: str, passed: int, **values: str) -> tuple[pytest.RunResult, pytest.RunResult]:
    """Record with the fake server's key, then replay strictly (CI) with the server stopped and no key."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    pytester.makepyfile(test_app=source.format(base_url=server.base_url, **values))
    recorded = pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=passed)
    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = pytester.runpytest("-s")
    replayed.assert_outcomes(passed=passed)
    return recorded, replayed


REFUSED = '''
import asyncio
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAI


def chat(model="error-400"):
    return ChatOpenAI(model=model, base_url="{base_url}", max_retries=0)


@pytest.mark.llm_cache(layer="{layer}")
def test_invoke(llm_cache):
    with pytest.raises(openai.BadRequestError) as raised:
        chat().invoke("Refuse me")
    print("INVOKE", raised.value.status_code, raised.value.body)


@pytest.mark.llm_cache(layer="{layer}")
def test_ainvoke(llm_cache):
    with pytest.raises(openai.BadRequestError) as raised:
        asyncio.run(chat().ainvoke("Refuse me asynchronously"))
    print("AINVOKE", raised.value.status_code, raised.value.body)


@pytest.mark.llm_cache(layer="{layer}")
def test_llm(llm_cache):
    with pytest.raises(openai.BadRequestError) as raised:
        OpenAI(model="error-400", base_url="{base_url}", max_retries=0).invoke("Refuse me too")
    print("LLM", raised.value.status_code, raised.value.body)
'''


@pytest.mark.parametrize(("layer", "host"), [("langchain", "langchain://"), ("http,langchain", "http://127.0.0.1:")])
def test_an_error_answer_is_recorded_and_replays_offline(llm_pytester, server, env, layer, host):
    """``pytest.raises(openai.BadRequestError)`` around a LangChain call passes in strict CI, with the provider's error:
    the LangChain layer alone keeps it as the call's entry, both layers as the HTTP recording."""
    recorded, replayed = _record_then_replay_offline(llm_pytester, server, env, REFUSED, passed=3, layer=layer)
    assert len(server.requests) == 3
    for tag in ("INVOKE", "AINVOKE", "LLM"):
        assert printed(recorded, tag)[0].startswith("400 ")
        assert printed(replayed, tag) == printed(recorded, tag)
    replayed.stdout.fnmatch_lines(["llm_replay: 3 replayed, 0 recorded, 0 missed*"])
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        rows = list(db.execute("SELECT status, request FROM interactions"))
    assert len(rows) == 3 and all(status == 400 and f'"host":"{host}' in request for status, request in rows), rows


AFTER_A_FAILURE = '''
import concurrent.futures
import openai
import pytest
from langchain_openai import ChatOpenAI


def chat(model="gpt-4o-mini"):
    return ChatOpenAI(model=model, base_url="{base_url}", max_retries=0)


def ask_then_stream(tag):
    try:
        chat("{failing}").invoke("Refuse me " + tag)
    except openai.APIStatusError as error:
        print("CAUGHT", error.status_code)
    return "".join(chunk.content for chunk in chat().stream("Stream me a haiku " + tag))


@pytest.mark.llm_cache(layer="langchain")
def test_same_thread(llm_cache):
    print("STREAMED", ask_then_stream("here"))
    print("COUNTS", llm_cache.replayed, llm_cache.recorded)


@pytest.mark.llm_cache(layer="langchain")
def test_pool_thread(llm_cache):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # one worker: the stream runs where the call failed
        print("STREAMED", pool.submit(ask_then_stream, "in a pool").result())
    print("COUNTS", llm_cache.replayed, llm_cache.recorded)
'''


def test_what_follows_a_failed_call_records_and_replays(llm_pytester, server, env):
    """After a LangChain call whose model raised (a 400 the app catches), a ``stream()`` in the same thread is recorded
    and replays offline: it neither goes live unrecorded nor gets the failed call's answer."""
    recorded, replayed = _record_then_replay_offline(llm_pytester, server, env, AFTER_A_FAILURE, passed=2, failing="error-400")
    assert printed(recorded, "CAUGHT") == printed(replayed, "CAUGHT") == ["400", "400"]
    assert printed(recorded, "COUNTS") == ["0 2", "0 2"] and printed(replayed, "COUNTS") == ["2 0", "2 0"]
    assert printed(replayed, "STREAMED") == printed(recorded, "STREAMED")
    assert "Stream me a haiku here" in printed(replayed, "STREAMED")[0]


def test_what_follows_a_call_failing_with_a_server_error_is_recorded(llm_pytester, server, env):
    """A 5xx is not recorded (the LangChain entry is missing, as at the HTTP layer), but the stream after it is."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=AFTER_A_FAILURE.format(base_url=server.base_url, failing="error-500"))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert printed(recorded, "CAUGHT") == ["500", "500"] and printed(recorded, "COUNTS") == ["0 1", "0 1"]
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        paths = sorted(json.loads(request)["path"] for request, in db.execute("SELECT request FROM interactions"))
    assert paths == ["/v1/chat/completions", "/v1/chat/completions"], "the two streams, recorded at the HTTP layer"


REFUSED_KEY = '''
import openai
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="langchain")
def test_refused_key(llm_cache):
    with pytest.raises(openai.AuthenticationError) as raised:
        ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0).invoke("hi")
    print("REFUSED", raised.value.status_code)
'''


def test_a_recorded_error_keeps_no_key_nor_account_header(llm_pytester, server, env):
    """The provider's 401 quotes the refused key, and every answer carries account headers: the LangChain entry holding
    the error is scrubbed as the HTTP layer scrubs a recording, and still replays offline."""
    refused = "sk-proj-" + "Wr0ngKeyValue1234567890abcdEFGH"
    env.setenv("OPENAI_API_KEY", refused)
    llm_pytester.makepyfile(test_app=REFUSED_KEY.format(base_url=server.base_url))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    assert refused in server.requests[0]["headers"]["authorization"], "the fake saw the key (and quoted it)"
    stored = cassette_file(llm_pytester).read_bytes()
    assert b"Incorrect API key provided" in stored, "the error itself is kept"
    for secret in (refused, refused[:20], "fake-session", "org-fake-account", "proj_fake_project"):
        assert secret.encode() not in stored, secret

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "REFUSED") == printed(recorded, "REFUSED") == ["401"]


FALLBACK = '''
import openai
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="langchain")
def test_app(llm_cache):
    try:
        print("ANSWER", ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0).invoke("hi").content)
    except openai.BadRequestError as error:
        print("ANSWER refused", error.status_code)
'''


def test_a_refresh_replaces_a_recorded_error_with_the_answer_and_back(llm_pytester, server, env):
    """A recorded error is an entry like any other: a refresh overwrites it with the model's answer (and an answer with
    a new error, as the HTTP layer does), and the replay gives what the refresh recorded."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=FALLBACK.format(base_url=server.base_url))
    server.fail_next(400)
    assert printed(llm_pytester.runpytest("-s", "--llm-mode=record"), "ANSWER") == ["refused 400"]
    assert printed(llm_pytester.runpytest("-s", "--llm-mode=record"), "ANSWER") == ["refused 400"], "replayed, not live"
    answered = printed(llm_pytester.runpytest("-s", "--llm-mode=refresh"), "ANSWER")
    assert answered[0].endswith(" #2") and len(server.requests) == 2
    assert printed(llm_pytester.runpytest("-s", "--llm-mode=replay"), "ANSWER") == answered
    server.fail_next(400)
    assert printed(llm_pytester.runpytest("-s", "--llm-mode=refresh"), "ANSWER") == ["refused 400"]
    server.stop()
    assert printed(llm_pytester.runpytest("-s", "--llm-mode=replay"), "ANSWER") == ["refused 400"]


def test_a_drop_in_cache_sharing_the_file_leaves_a_recorded_error_alone(llm_pytester, server, env):
    """The app's own ``SQLiteCache`` on the suite's cassette file: an error a test recorded is a miss to it, and the
    answer the model then gives is not written over that test's recording (kept in memory instead)."""
    from langchain_core.globals import set_llm_cache
    from langchain_openai import ChatOpenAI

    from llm_replay.langchain import SQLiteCache

    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=FALLBACK.format(base_url=server.base_url))
    server.fail_next(400)
    assert printed(llm_pytester.runpytest("-s", "--llm-mode=record"), "ANSWER") == ["refused 400"]

    cache = SQLiteCache(database_path=cassette_file(llm_pytester))
    set_llm_cache(cache)
    answers = [ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, max_retries=0).invoke("hi").content for _ in range(2)]
    cache.close()
    assert answers[0] == answers[1] and answers[0].endswith(" #2") and len(server.requests) == 2, "the repeat from the cache"

    server.stop()
    env.setenv("CI", "true")
    assert printed(llm_pytester.runpytest("-s"), "ANSWER") == ["refused 400"]


BATCH = '''
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="langchain")
def test_batch(llm_cache):
    prompts = ["First of four", "Second of four", "Third of four", "Fourth of four"]
    chat = ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0)
    results = chat.batch(prompts, config={{"max_concurrency": 4}}, return_exceptions=True)
    for prompt, result in zip(prompts, results):
        print("RESULT", prompt, "->", getattr(result, "status_code", None) or result.content)
'''


def test_a_batch_whose_calls_partly_fail_replays_each_outcome(llm_pytester, server, env):
    """Four threads at once, two answered 400 (whichever came first): each prompt replays its own outcome offline."""
    server.fail_next(400, times=2)
    recorded, replayed = _record_then_replay_offline(llm_pytester, server, env, BATCH, passed=1)
    outcomes = printed(recorded, "RESULT")
    assert sum(outcome.endswith("-> 400") for outcome in outcomes) == 2 and len(server.requests) == 4, outcomes
    assert printed(replayed, "RESULT") == outcomes


RETRIED = '''
import openai
import pytest
from langchain_openai import ChatOpenAI


@pytest.mark.llm_cache(layer="langchain", repeats="sequence")
def test_retried_by_the_app(llm_cache):
    chat = ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0)
    for attempt in range(3):
        try:
            print("ANSWER", attempt, chat.invoke("Try me").content)
            break
        except openai.BadRequestError as error:
            print("ANSWER", attempt, "refused", error.status_code)
'''


def test_an_app_retry_after_a_recorded_error_replays_in_order(llm_pytester, server, env):
    """``repeats="sequence"``: the refused first attempt keeps its own place (0), the answer of the retry the next (1)."""
    server.fail_next(400)
    recorded, replayed = _record_then_replay_offline(llm_pytester, server, env, RETRIED, passed=1)
    assert printed(recorded, "ANSWER")[0] == "0 refused 400" and printed(recorded, "ANSWER")[1].startswith("1 echo")
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")


SAME_REQUEST_TWICE = '''
import pytest
from langchain_openai import ChatOpenAI


def chat(**settings):
    return ChatOpenAI(model="gpt-4o-mini", base_url="{base_url}", max_retries=0, **settings)


@pytest.mark.llm_cache(layer="langchain", repeats="sequence")
def test_cached_then_not(llm_cache):
    print("ANSWER", chat().invoke("Same words").content, "|", chat(cache=False).invoke("Same words").content)
'''


def test_the_cache_s_own_request_takes_no_place_in_a_sequence(llm_pytester, server, env):
    """``repeats="sequence"``: the HTTP request a LangChain cache miss sends is the cache's (never replayed at the HTTP
    layer), so the same request sent past the cache (``cache=False``) is the first of its kind, recording and replaying."""
    recorded, replayed = _record_then_replay_offline(llm_pytester, server, env, SAME_REQUEST_TWICE, passed=1)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
