"""What a run tells a person at its end: tokens, time and money replays saved; recording progress; one error, not many."""

from __future__ import annotations

import json

from decimal import Decimal

import pytest
from conftest import cassette_file, write_ini

from llm_replay.stores.sqlite import SQLiteCache


# Every test here, inner sessions included, runs in a new user's shell (conftest's env).
pytestmark = pytest.mark.usefixtures("env")

APP = '''
import openai

def ask(prompt, model="gpt-4o-mini"):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model=model, messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content

def test_priced(llm_cache):
    ask("What is the capital of France?")
    ask("What is the capital of France?")

def test_house_model(llm_cache):
    ask("Summarise the minutes", model="house-model")
'''


def _recorded(pytester: pytest.Pytester, server, env) -> list:
    pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = pytester.runpytest("--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert "llm_replay: live" not in recorded.stdout.str(), "without -v only calls slower than a few seconds are shown"
    env.delenv("OPENAI_API_KEY")
    server.stop()
    store = SQLiteCache(cassette_file(pytester), readonly=True)
    try:
        return list(store.interactions())
    finally:
        store.close()


def test_session_line_counts_tokens_time_and_cost_saved_and_names_unpriced_models(llm_pytester, server, env):
    recordings = _recorded(llm_pytester, server, env)
    by_model = {r.request.model: r for r in recordings}
    usage = {model: r.usage() for model, r in by_model.items()}
    assert all(None not in pair for pair in usage.values())

    # The ini's prices win over the database: a dollar per input token, two per output token.
    write_ini(llm_pytester, "llm_prices =\n    gpt-4o-mini: 1000000 2000000")
    result = llm_pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(passed=2)
    tokens = sum(sum(pair) for pair in usage.values()) + sum(usage["gpt-4o-mini"])  # the repeat replays twice
    seconds = sum(r.latency_ms for r in recordings) / 1000 + by_model["gpt-4o-mini"].latency_ms / 1000
    prompt, completion = usage["gpt-4o-mini"]
    cost = Decimal(2 * (prompt + 2 * completion))
    result.stdout.fnmatch_lines([
        "llm_replay: 3 replayed, 0 recorded, 0 missed in 2 tests (mode replay, cassette cassettes/llm_cache.sqlite3)",
        f"llm_replay: replays saved {tokens:,} tokens, {seconds:,.1f} s of API time, about ${cost:,.2f} (no price for house-model: set ini llm_prices)",
    ])
    # Under pytest-xdist each worker tallies its own replays; the controller adds them up to the same line.
    spread = llm_pytester.runpytest("--llm-mode=replay", "-p", "xdist", "-n", "2")
    spread.assert_outcomes(passed=2)
    spread.stdout.fnmatch_lines([
        f"llm_replay: replays saved {tokens:,} tokens, {seconds:,.1f} s of API time, about ${cost:,.2f} (no price for house-model: set ini llm_prices)",
    ])

    # Without the ini, genai-prices knows gpt-4o-mini; the house model still has no price, and says so.
    write_ini(llm_pytester)
    result = llm_pytester.runpytest("--llm-mode=replay", "-k", "priced")
    result.assert_outcomes(passed=1)
    line = next(line for line in result.outlines if line.startswith("llm_replay: replays saved"))
    assert f"{2 * (prompt + completion):,} tokens" in line and line.endswith("less than $0.0001"), "genai-prices knows gpt-4o-mini (a few tokens cost under a hundredth of a cent)"


def test_a_bad_price_line_is_a_usage_error_naming_the_option(llm_pytester):
    write_ini(llm_pytester, "llm_prices = gpt-4o-mini: cheap")
    llm_pytester.makepyfile("def test_x(): pass")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option llm_prices: cannot read 'gpt-4o-mini: cheap'; write one model a line as 'MODEL: INPUT OUTPUT'*"])


def test_a_mistyped_cassette_in_replay_is_called_missing_with_its_path(llm_pytester, server):
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    result = llm_pytester.runpytest("--llm-mode=replay", "--llm-cassette=casettes/llm_cache.sqlite3", "-k", "house")
    result.assert_outcomes(failed=1)
    missing = llm_pytester.path / "casettes" / "llm_cache.sqlite3"
    result.stdout.fnmatch_lines([f"*closest recording: none (the cassette {missing} is missing: no such file; check --llm-cassette*"])
    assert "empty" not in result.stdout.str()
    result.stdout.fnmatch_lines(["llm_replay: 0 replayed, 0 recorded, 1 missed in 1 test (mode replay, cassette casettes/llm_cache.sqlite3 is missing: no such file)"])


DRIFT_APP = '''
import openai

def client():
    return openai.OpenAI(base_url="{base_url}", max_retries=0)

def test_prose(llm_cache):
    client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Write a haiku"}}])

def test_tool(llm_cache):
    tools = [{{"type": "function", "function": {{"name": "search", "parameters": {{"type": "object", "properties": {{}}}}}}}}]
    client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "find it"}}], tools=tools)
'''


def test_refresh_reports_drift_by_class_per_test_with_v_and_fails_on_chosen_classes(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=DRIFT_APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("--llm-mode=record", "-v")
    recorded.assert_outcomes(passed=2)
    # -v: each live call as it finishes, with its test, endpoint, model and seconds
    recorded.stdout.fnmatch_lines([
        "llm_replay: live test_app.py::test_prose POST 127.0.0.1:*/v1/chat/completions gpt-4o-mini *.* s",
        "llm_replay: live test_app.py::test_tool POST 127.0.0.1:*/v1/chat/completions gpt-4o-mini *.* s",
    ])
    assert "llm_replay drift" not in recorded.stdout.str(), "recording new answers replaces nothing"
    write_ini(llm_pytester, "llm_slow_call = 0")  # every call is "slow": shown without -v
    quiet = llm_pytester.runpytest("--llm-mode=refresh", "--llm-fail-on-drift=tool_calls,status")
    quiet.assert_outcomes(passed=2)
    assert quiet.ret == pytest.ExitCode.OK, "only the prose drifted (its text carries the server's request number)"
    quiet.stdout.fnmatch_lines([
        "llm_replay: live test_app.py::test_tool POST 127.0.0.1:*/v1/chat/completions gpt-4o-mini *.* s",
        "llm_replay drift: 2 answers compared with the recordings: 1 text, 1 identical",
    ])
    assert "test_app.py::test_prose: " not in quiet.stdout.str(), "per test only with -v"

    write_ini(llm_pytester, "llm_fail_on_drift = text")
    failing = llm_pytester.runpytest("--llm-mode=refresh", "-v")  # (tests/test_html_report.py adds up xdist workers' drift)
    failing.assert_outcomes(passed=2)
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines([
        "llm_replay drift: 2 answers compared with the recordings: 1 text, 1 identical",
        "  test_app.py::test_prose: 1 text",
        "  test_app.py::test_tool: 1 identical",
        "llm_replay: the session fails: ini llm_fail_on_drift=text and answers drifted (1 text) in test_app.py::test_prose",
    ])


def test_an_unknown_drift_class_is_a_usage_error(llm_pytester):
    llm_pytester.makepyfile("def test_x(): pass")
    result = llm_pytester.runpytest("--llm-fail-on-drift=text,wording")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-fail-on-drift: unknown drift class 'wording'; use any of: status, finish_reason, tool_calls, shape, text"])


def test_prices_come_from_the_ini_first_then_genai_prices_and_a_missing_database_is_named(monkeypatch):
    from llm_replay.engine.pricing import PriceBook, parse_prices
    from llm_replay.engine.savings import Savings

    book = PriceBook(parse_prices(["# ours", "", "house-model: 2 8", "gpt-4o-mini: 0,5"], "ini option llm_prices"))
    assert book.cost("house-model", "http://127.0.0.1:8000/v1", 1_000_000, 500_000) == Decimal(6)
    assert book.cost("gpt-4o-mini", "https://api.openai.com/v1/chat/completions", 2_000_000, 0) == Decimal(0)
    assert book.cost("unheard-of-model-xyz", "http://127.0.0.1:8000/v1", 10, 10) is None and book.cost(None, "", 1, 1) is None
    from genai_prices import Usage, calc_price

    expected = calc_price(Usage(input_tokens=1000, output_tokens=100), "claude-3-5-haiku-latest", provider_api_url="https://api.anthropic.com").total_price
    assert PriceBook().cost("claude-3-5-haiku-latest", "https://api.anthropic.com/v1/messages", 1000, 100) == Decimal(expected) > 0
    assert PriceBook().cost("gpt-4o-mini", "http://127.0.0.1:5000/v1", 1000, 100) > 0, "a local URL falls back to the model name"

    monkeypatch.setitem(__import__("sys").modules, "genai_prices", None)  # not installed
    bare = PriceBook()
    assert bare.cost("gpt-4o-mini", "https://api.openai.com/v1", 10, 10) is None and bare.database_missing
    saved = Savings(tokens=20, unpriced={"gpt-4o-mini": 1}, database_missing=True)
    assert saved.line() == "llm_replay: replays saved 20 tokens, 0.0 s of API time (no price for gpt-4o-mini: install genai-prices (pip install genai-prices) or set ini llm_prices)"


def test_the_savings_read_only_the_replayed_recordings_and_agree_across_stores(tmp_path, monkeypatch):
    """SQLite reads the replayed rows by key (a few keys to a query here, to cross chunk boundaries); the result
    is what the generic path over any store gives for the same recordings."""
    from llm_replay.engine.pricing import PriceBook, parse_prices
    from llm_replay.engine.savings import replay_savings
    from llm_replay.model.fingerprint import CanonicalRequest, canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse
    from llm_replay.stores import sqlite
    from llm_replay.stores.memory import InMemoryCache

    monkeypatch.setattr(sqlite, "_KEYS_PER_QUERY", 2)
    recordings = [
        Interaction.of(
            canonicalize("POST", "https://api.openai.com/v1/chat/completions", json.dumps({"model": "house-model", "messages": [{"role": "user", "content": f"q{n}"}]}), "application/json"),
            RecordedResponse(200, "OK", {}, json.dumps({"usage": {"prompt_tokens": 10 * n, "completion_tokens": n}}).encode()),
            latency_ms=100.0 * n,
        )
        for n in range(1, 8)
    ] + [  # an answer that reports no tokens, beside priced ones of its model; a URL with a query, no model
        Interaction.of(
            canonicalize("POST", "https://api.openai.com/v1/chat/completions", json.dumps({"model": "house-model", "input": "no usage"}), "application/json"),
            RecordedResponse(200, "OK", {}, b"{}"),
            latency_ms=50.0,
        ),
        Interaction.of(
            canonicalize("POST", "https://example.test/v1/embed?alt=sse&b=2", json.dumps({"contents": []}), "application/json"),  # no model: unpriced by URL
            RecordedResponse(200, "OK", {}, json.dumps({"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}}).encode()),
        ),
    ]
    file_store, memory_store = sqlite.SQLiteCache(tmp_path / "c.sqlite3"), InMemoryCache()
    for recording in recordings:
        file_store.put(recording)
        memory_store.put(recording)
    replays = {recordings[n].key: n for n in (1, 2, 4, 6)} | {("0" * 32, 0): 3, recordings[0].key: 0, recordings[7].key: 2, recordings[8].key: 3}
    book = PriceBook(parse_prices(["house-model: 1000 2000"], "ini option llm_prices"))
    try:
        assert [row.fingerprint for row in file_store.summaries(keys=replays)] == sorted(r.fingerprint for r in recordings if r.key in replays)
        from_memory = replay_savings(memory_store, replays, book)
        with monkeypatch.context() as patched:  # SQLite adds the usage up in SQL: no request is parsed in Python
            patched.setattr(CanonicalRequest, "from_stored", classmethod(lambda cls, text: pytest.fail(f"parsed a request in Python: {text}")))
            from_file = replay_savings(file_store, replays, book)
        monkeypatch.setattr(sqlite.sqlite3, "sqlite_version_info", (3, 37, 2))  # no JSON functions: requests parsed in Python
        from_old_sqlite = replay_savings(file_store, replays, book)
    finally:
        file_store.close()
    tokens = sum(count * 11 * (n + 1) for n, count in ((1, 1), (2, 2), (4, 4), (6, 6))) + 3 * 6
    assert from_file.tokens == from_memory.tokens == from_old_sqlite.tokens == tokens
    assert from_file.line() == from_memory.line() == from_old_sqlite.line()
    assert from_file.priced == from_old_sqlite.priced == 13, "the answers that report no tokens are not priced"
    assert from_file.cost == from_memory.cost == sum(count * (10 * (n + 1) * 1000 + (n + 1) * 2000) for n, count in ((1, 1), (2, 2), (4, 4), (6, 6))) / Decimal(1_000_000)
    assert from_file.unpriced == from_memory.unpriced == from_old_sqlite.unpriced == {"https://example.test/v1/embed?alt=sse&b=2": 3}
    assert round(from_file.seconds, 1) == round(sum(count * 0.1 * (n + 1) for n, count in ((1, 1), (2, 2), (4, 4), (6, 6))) + 2 * 0.05, 1)
