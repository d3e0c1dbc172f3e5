"""A session's memory does not grow with its replays: a test's handle, with every interaction it saw, goes after
the test, and a store (SQLite, Redis) keeps a bounded set of recently read answers, never a large one.
(benchmarks/memory.py measures the peak RSS of real sessions.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores import recent
from llm_replay.stores.spec import open_store

BUDGET, ITEM = 64 * 1024, 4 * 1024  # the real ones (32 MB, 2 MB) scaled down, the rule the same


def _answer(n: int, size: int) -> Interaction:
    request = canonicalize("POST", "https://api.test/v1/chat/completions", f'{{"q": {n}}}'.encode())
    return Interaction.of(request, RecordedResponse(200, "OK", {}, (b"Paris. " * size)[:size]), tests=("t.py::test",))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_the_store_keeps_small_answers_it_read_a_bounded_while_and_never_a_large_one(kind: str, tmp_path: Path, monkeypatch, request) -> None:
    monkeypatch.setattr(recent, "HIT_CACHE_BYTES", BUDGET)
    monkeypatch.setattr(recent, "HIT_CACHE_ITEM_BYTES", ITEM)
    store = open_store(str(tmp_path / "c.sqlite3") if kind == "sqlite" else request.getfixturevalue("redis_url"))
    small, large = _answer(0, 100), _answer(1, ITEM + 1)
    many = [_answer(n, ITEM // 2) for n in range(2, 2 + 4 * BUDGET // ITEM)]
    for interaction in (small, large, *many):
        store.put(interaction)
    assert store.get(small.fingerprint) is store.get(small.fingerprint), "a small answer replayed again is not read again"
    assert store.get(large.fingerprint) is not store.get(large.fingerprint), "a large answer is not kept after it is read"
    first = store.get(many[0].fingerprint)
    for interaction in many[1:]:
        store.get(interaction.fingerprint)
    assert store.get(many[0].fingerprint) is not first, "twice the budget read since: the first was let go"
    store.close()


HANDLES = '''
import gc
import weakref

import openai

HANDLE = []


def test_replays_many_times(llm_cache):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    for _ in range(50):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "again"}}])
    assert len(llm_cache.interactions) == 50
    HANDLE.append(weakref.ref(llm_cache))


def test_the_last_handle_is_gone():
    gc.collect()
    assert HANDLE[0]() is None, "the previous test's handle, and the interactions it saw, were let go"
'''


def test_a_tests_handle_and_its_interactions_go_after_the_test(llm_pytester, server, env) -> None:
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_handles=HANDLES.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record", "-p", "no:randomly").assert_outcomes(passed=2)
