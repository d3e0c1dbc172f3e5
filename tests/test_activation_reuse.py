"""vcrpy's patchers are built once per process and re-entered per test: prove nothing leaks between tests.

Sessions of several tests in a row over a pooled ``requests`` session (urllib3's connection pool, whose
connections vcrpy tracks per activation) and the openai SDK (httpx2); a test without ``llm_cache`` in
between must reach the server unrecorded; ``use_cassette`` nested in a test's ``llm_cache`` records into
its own cassette, and the test's own cassette takes over again after the block.
"""

from __future__ import annotations

import os
import sqlite3

import pytest
from conftest import cassette_file, printed

REUSE_TESTS = '''
import openai
import requests

from llm_replay import use_cassette

BASE_URL = "{base_url}"
SESSION = requests.Session()  # one connection pool shared by every test of the module


def via_session(prompt):
    answer = SESSION.post(BASE_URL + "/chat/completions", json={{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": prompt}}]}},
                          headers={{"Authorization": "Bearer {api_key}"}}, timeout=10)
    return answer.json()["choices"][0]["message"]["content"]


def via_openai(prompt):
    client = openai.OpenAI(base_url=BASE_URL, api_key="{api_key}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


def test_first(llm_cache):
    print("ANSWER", via_session("one"), "|", via_openai("two"))
    assert llm_cache.replayed + llm_cache.recorded == 2


def test_second(llm_cache):
    print("ANSWER", via_session("three"), "|", via_openai("four"))
    assert llm_cache.replayed + llm_cache.recorded == 2


def test_between_without_llm_cache():
    assert via_session("not intercepted").startswith("echo[0]: not intercepted")


def test_nested_use_cassette(llm_cache):
    with use_cassette("inner.sqlite3") as inner:
        print("ANSWER", via_openai("five"))
        assert inner.replayed + inner.recorded == 1
    assert llm_cache.replayed + llm_cache.recorded == 0
    print("ANSWER", via_session("six"))
    assert llm_cache.replayed + llm_cache.recorded == 1
'''



def test_patchers_reused_across_tests_leak_nothing(llm_pytester, server, env):
    llm_pytester.makepyfile(test_reuse=REUSE_TESTS.format(base_url=server.base_url, api_key=server.api_key))

    recorded = llm_pytester.runpytest("-s")
    recorded.assert_outcomes(passed=4)
    assert len(server.requests) == 7, "every first call went live, and so did the one outside llm_cache"
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 5 recorded, 0 missed in 3 tests*"])
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        prompts = {row[0] for row in db.execute("SELECT request FROM interactions")}
    assert len(prompts) == 5 and not any("not intercepted" in text for text in prompts), "the test without llm_cache was recorded"
    assert not any("five" in text for text in prompts), "the nested block recorded into the test's cassette"
    assert (llm_pytester.path / "inner.sqlite3").exists()

    server.stop()
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s", "-k", "not between")
    replayed.assert_outcomes(passed=3, deselected=1)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER") and len(printed(replayed, "ANSWER")) == 4
    replayed.stdout.fnmatch_lines(["llm_replay: 5 replayed, 0 recorded, 0 missed in 3 tests*"])


def test_every_patched_library_is_restored_exactly():
    """Patches come off after each activation, nested or not; inherited attributes get no own copy left behind."""
    import http.client

    import httpx
    import httpx2
    import urllib3.connection
    import urllib3.connectionpool

    from llm_replay import use_cassette

    patched = (http.client, urllib3.connection, urllib3.connectionpool, urllib3.connectionpool.HTTPConnectionPool,
               urllib3.connectionpool.HTTPSConnectionPool, httpx.HTTPTransport, httpx.MockTransport, httpx2.HTTPTransport,
               httpx2.AsyncHTTPTransport, httpx2.MockTransport)
    before = [dict(vars(target)) for target in patched]
    for _ in range(2):
        with use_cassette(None, mode="record"):
            assert "_get_conn" in vars(urllib3.connectionpool.HTTPSConnectionPool), "vcrpy's patches are on"
            with use_cassette(None, mode="record"):
                pass
    assert [dict(vars(target)) for target in patched] == before


def test_a_part_that_fails_to_start_leaves_the_parts_started_before_it(monkeypatch):
    """The clock starts last: when it cannot (an instant freezegun rejects), the placeholder keys, the network
    guard and vcrpy's patches that started before it are all gone again, and the next activation works."""
    import socket

    import urllib3.connectionpool

    from llm_replay.engine.recorder import Recorder
    from llm_replay.engine.settings import Mode
    from llm_replay.layers.activation import activated
    from llm_replay.layers.network import installed_guard
    from llm_replay.stores.memory import InMemoryCache

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    connect = socket.socket.connect
    patched = dict(vars(urllib3.connectionpool.HTTPSConnectionPool))
    with pytest.raises(Exception, match="not a date"):
        with activated(Recorder(InMemoryCache(), Mode.REPLAY, frozen_at="not a date")):  # type: ignore[arg-type]
            pytest.fail("the block ran without its clock")
    assert "OPENAI_API_KEY" not in os.environ, "the placeholder key stayed"
    assert installed_guard() is None and socket.socket.connect is connect, "the network guard stayed"
    assert dict(vars(urllib3.connectionpool.HTTPSConnectionPool)) == patched, "vcrpy's patches stayed"
    with activated(Recorder(InMemoryCache(), Mode.REPLAY)) as recorder:
        assert os.environ["OPENAI_API_KEY"] and installed_guard() is not None and recorder.mode is Mode.REPLAY
    assert "OPENAI_API_KEY" not in os.environ and installed_guard() is None


def test_cassettes_in_two_threads_overlap_and_a_thread_of_neither_is_refused(server) -> None:
    """Patches stay on while either activation is, come off after the last; a call from a thread that activated
    nothing while two threads' cassettes are active cannot be attributed, and says so."""
    import threading

    import httpx2

    import llm_replay

    original = httpx2.HTTPTransport.handle_request
    first_in, second_out = threading.Event(), threading.Event()
    seen = {}

    def hold() -> None:
        with llm_replay.use_cassette(None, mode="record") as recorder:
            first_in.set()
            second_out.wait(10)
            seen["first"] = (httpx2.HTTPTransport.handle_request is not original, recorder.recorded)

    def orphan() -> None:
        try:
            httpx2.get(server.base_url + "/models")
        except llm_replay.CassetteMiss as miss:
            seen["orphan"] = str(miss)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert first_in.wait(10)
        with llm_replay.use_cassette(None, mode="record") as second:
            httpx2.post(server.base_url + "/chat/completions", json={"model": "m", "messages": []}, headers={"Authorization": f"Bearer {server.api_key}"})
            stray = threading.Thread(target=orphan)
            stray.start()
            stray.join(10)
        assert second.recorded == 1
    finally:
        second_out.set()
        holder.join(10)
    assert seen["first"] == (True, 0), "the patches came off while the first thread's cassette was active, or it recorded the second's call"
    assert "2 cassettes are active in different threads" in seen["orphan"] and "activated none of them" in seen["orphan"]
    assert httpx2.HTTPTransport.handle_request is original


KEPT_ON_TESTS = '''
import httpx2
import openai
import pytest

ORIGINAL = httpx2.HTTPTransport.handle_request


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", api_key="{api_key}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


@pytest.fixture(scope="module")
def service():
    yield
    # torn down in test_b's teardown, after its llm_cache: no cassette is active, the patches are still on
    print("TEARDOWN", ask("asked while tearing down"), httpx2.HTTPTransport.handle_request is not ORIGINAL)


def test_a(service, llm_cache):
    print("ANSWER", ask("a"))


def test_b(service, llm_cache):
    print("ANSWER", ask("b"))


def test_c_without_llm_cache():
    print("UNTOUCHED", httpx2.HTTPTransport.handle_request is ORIGINAL, ask("not intercepted"))


def test_d(llm_cache):
    print("ANSWER", ask("d"))
'''


def test_patches_left_on_between_llm_cache_tests_pass_other_requests_unrecorded_and_come_off_for_other_tests(llm_pytester, server, env):
    """vcrpy's patches stay on from one llm_cache test to the next (docs/performance.md); what runs between two such
    tests goes live and is not recorded, a test without llm_cache runs unpatched, and the session ends unpatched."""
    import httpx2

    original = httpx2.HTTPTransport.handle_request
    llm_pytester.makepyfile(test_kept=KEPT_ON_TESTS.format(base_url=server.base_url, api_key=server.api_key))
    recorded = llm_pytester.runpytest("-s", "-p", "no:randomly", "--llm-mode=record")
    recorded.assert_outcomes(passed=4)
    assert [line.split(": ", 1)[0] + " " + line.rsplit(" ", 1)[1] for line in printed(recorded, "TEARDOWN")] == ["echo[0] True"]
    assert printed(recorded, "UNTOUCHED")[0].startswith("True echo[0]: not intercepted")
    assert len(server.requests) == 5, "every call went live once"
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        prompts = [row[0] for row in db.execute("SELECT request FROM interactions")]
    assert len(prompts) == 3 and not any("tearing down" in text or "not intercepted" in text for text in prompts)
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 3 recorded, 0 missed in 3 tests*"])
    assert httpx2.HTTPTransport.handle_request is original, "the session ended with the patches off"
