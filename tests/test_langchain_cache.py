"""llm_replay.langchain's caches as LangChain users meet them: LangChain's own standard cache suites,
the caching page's snippet over real HTTP, ChatOpenAI(cache=...), and the cassette they share."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import pytest_asyncio
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.outputs import Generation
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests.cache import (
    AsyncCacheTestSuite,
    SyncCacheTestSuite,
)

from llm_replay import CassetteError
from llm_replay.langchain import InMemoryCache, SQLiteCache
from llm_replay.stores.sqlite import SQLiteCache as Cassette

# The async suite's tests are coroutines; its one sync test (no overrides) would warn about the class mark.
ASYNC_SUITE = [pytest.mark.asyncio, pytest.mark.filterwarnings("ignore:The test <Function test_no_overrides_DO_NOT_OVERRIDE>")]


class TestInMemoryCacheStandard(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self) -> InMemoryCache:
        return InMemoryCache()


class TestInMemoryCacheStandardAsync(AsyncCacheTestSuite):
    pytestmark = ASYNC_SUITE

    @pytest_asyncio.fixture
    async def cache(self) -> InMemoryCache:
        return InMemoryCache()


class TestSQLiteCacheStandard(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> SQLiteCache:
        return SQLiteCache(database_path=tmp_path / ".langchain.db")


class TestSQLiteCacheStandardAsync(AsyncCacheTestSuite):
    pytestmark = ASYNC_SUITE

    @pytest_asyncio.fixture
    async def cache(self, tmp_path: Path) -> SQLiteCache:
        return SQLiteCache(database_path=tmp_path / ".langchain.db")


@pytest.fixture
def global_cache_restored():
    """The snippet sets LangChain's process-wide cache; put the previous one back for the other tests."""
    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


def test_caching_page_snippet_runs_verbatim(server, tmp_path, monkeypatch, global_cache_restored):
    monkeypatch.chdir(tmp_path)
    # --- LangChain's "How to cache LLM responses" page, with our classes and the loopback server ---
    from langchain_core.globals import set_llm_cache
    from langchain_openai import OpenAI

    from llm_replay.langchain import InMemoryCache, SQLiteCache

    llm = OpenAI(model="gpt-3.5-turbo-instruct", n=2, best_of=2, base_url=server.base_url, api_key=server.api_key)
    set_llm_cache(InMemoryCache())
    first = llm.invoke("Tell me a joke")
    second = llm.invoke("Tell me a joke")
    assert len(server.requests) == 1, "the second call is served from the in-memory cache"
    assert second == first and first.endswith("#1")

    set_llm_cache(SQLiteCache(database_path=".langchain.db"))
    third = llm.invoke("Tell me a joke")
    fourth = llm.invoke("Tell me a joke")
    # ---
    assert len(server.requests) == 2, "a new SQLite cache asks once, then answers from the file"
    assert fourth == third and third.endswith("#2")
    assert json.loads(server.requests[-1]["body"])["best_of"] == 2

    # A new process (a new cache over the same file) answers from the file with the server gone.
    server.stop()
    set_llm_cache(SQLiteCache(database_path=".langchain.db"))
    assert llm.invoke("Tell me a joke") == third


def test_chat_model_cache_argument_and_async(server, tmp_path):
    cache = SQLiteCache(database_path=tmp_path / "chat.db")
    chat = ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key=server.api_key, cache=cache)
    live = chat.invoke("What is the capital of France?")
    cached = chat.invoke("What is the capital of France?")
    assert len(server.requests) == 1
    assert (cached.content, cached.response_metadata, cached.usage_metadata["output_tokens"]) == (
        live.content, live.response_metadata, live.usage_metadata["output_tokens"])

    import asyncio

    async def ask_async():
        return await chat.ainvoke("What is the capital of France?"), await chat.ainvoke("And of Spain?")

    again, spain = asyncio.run(ask_async())
    assert again.content == live.content
    assert "Spain" in spain.content and len(server.requests) == 2


def test_entries_live_beside_http_recordings_and_clear_keeps_those(tmp_path):
    path = tmp_path / "llm_cache.sqlite3"
    cassette = Cassette(path)
    from llm_replay.model.fingerprint import canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse

    http = Interaction.of(canonicalize("POST", "https://api.openai.com/v1/chat/completions", b'{"model":"m"}', "application/json"),
                          RecordedResponse(200, "OK", {}, b"{}"))
    cassette.put(http)
    cassette.close()

    cache = SQLiteCache(database_path=path)
    cache.update("Tell me a joke", "[('model_name', 'gpt-3.5-turbo-instruct'), ('temperature', 0.7)]", [Generation(text="knock knock")])
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT model, request FROM interactions WHERE model IS NOT NULL").fetchall())
    assert '"prompt":"Tell me a joke"' in rows["gpt-3.5-turbo-instruct"], "readable in the sqlite3 shell"
    assert '"temperature":0.7' in rows["gpt-3.5-turbo-instruct"]

    cache.clear()
    assert cache.lookup("Tell me a joke", "[('model_name', 'gpt-3.5-turbo-instruct'), ('temperature', 0.7)]") is None
    cache.close()
    assert [i.fingerprint for i in Cassette(path).interactions()] == [http.fingerprint], "clear() removes LangChain entries only"


def test_a_hit_returns_what_was_stored_not_the_callers_objects(tmp_path):
    cache = InMemoryCache()
    stored = [Generation(text="first")]
    cache.update("p", "[('model', 'm')]", stored)
    stored[0].text = "changed by the caller afterwards"
    assert cache.lookup("p", "[('model', 'm')]") == [Generation(text="first")]


def test_langchain_community_file_gets_a_clear_error(tmp_path):
    path = tmp_path / ".langchain.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE full_llm_cache (prompt TEXT, llm TEXT, idx INTEGER, response TEXT)")
    before = path.read_bytes()
    with pytest.raises(CassetteError, match=r"not an llm_replay cassette \(tables: full_llm_cache\).*langchain-community's SQLiteCache.*another database_path"):
        SQLiteCache(database_path=path)
    assert path.read_bytes() == before


def test_a_damaged_entry_of_the_drop_in_cache_is_an_error_naming_it_and_kept(tmp_path):
    cache = SQLiteCache(database_path=tmp_path / ".langchain.db")
    cache.update("Tell me a joke", "[('n', 1)]", [Generation(text="a joke")])
    with sqlite3.connect(tmp_path / ".langchain.db") as db:
        db.execute("UPDATE interactions SET body = '[1, 2'")
        (fingerprint, occurrence), = db.execute("SELECT fingerprint, occurrence FROM interactions")
    with pytest.raises(CassetteError, match=rf"the LangChain entry {fingerprint}#{occurrence} in .*cannot be read \(JSONDecodeError.*"
                       rf"delete it and record it again: llm-replay rm --cassette .*\.langchain\.db {fingerprint}#{occurrence}"):
        SQLiteCache(database_path=tmp_path / ".langchain.db").lookup("Tell me a joke", "[('n', 1)]")
