"""Ownership that a later prune relies on, over a Redis that two checkouts (or machines) share: a recording written
again keeps the tests that owned it, so a partial prune in one checkout never takes what the other still asks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import ONLY_OUR_TESTS_PLUGINS_OFF

from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.spec import open_store

ASKING = '''
import os

import openai


def test_{name}(llm_cache):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": os.environ.get("ASKS", "shared")}}])
'''


NEW = '''

def test_new(llm_cache):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "new"}}])
'''


def _checkout(root: Path, name: str, base_url: str, url: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "pytest.ini").write_text(f"[pytest]\nasyncio_default_fixture_loop_scope = function\nllm_cassette = {url}\n")
    (folder / f"test_{name}.py").write_text(ASKING.format(name=name, base_url=base_url))
    return folder


def _two_checkouts(llm_pytester: pytest.Pytester, redis_server, server, env: pytest.MonkeyPatch) -> tuple[str, Path, Path, Callable[..., pytest.RunResult]]:
    """Two checkouts (one, two) sharing this test's Redis, with the API key set; ``run(checkout, *args)`` runs pytest
    in one of them, in this process."""
    url = redis_server.url()
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("PYTEST_ADDOPTS", ONLY_OUR_TESTS_PLUGINS_OFF)
    one, two = (_checkout(llm_pytester.path, name, server.base_url, url) for name in ("one", "two"))

    def run(checkout: Path, *args: str) -> pytest.RunResult:
        env.chdir(checkout)
        return llm_pytester.runpytest_inprocess(*args)

    return url, one, two, run


def _owners(url: str) -> dict[str, set[str]]:
    store = open_store(url, readonly=True)
    try:
        return {interaction.request.body["messages"][0]["content"]: set(interaction.tests) for interaction in store.interactions()}  # type: ignore[index]
    finally:
        store.close()


def test_a_recording_re_recorded_in_one_checkout_keeps_the_other_checkouts_owner(llm_pytester, redis_server, server, env):
    """Checkout one re-records an expired answer (record mode, on_expired = refresh): the write replaced the owners
    with its own test, checkout two's test was no owner any more, and one's next partial --llm-prune deleted the answer
    two still replays (its bookkeeping, on the other machine, is not one's to read)."""
    url, one, two, run = _two_checkouts(llm_pytester, redis_server, server, env)

    run(one, "--llm-mode=record").assert_outcomes(passed=1)
    run(two, "--llm-mode=record").assert_outcomes(passed=1)  # replays one's answer, and owns it from now on
    assert _owners(url) == {"shared": {"test_one.py::test_one", "test_two.py::test_two"}}
    time.sleep(1.1)
    rerecorded = run(one, "--llm-mode=record", "-o", "llm_max_age=1s", "-o", "llm_on_expired=refresh")
    rerecorded.assert_outcomes(passed=1)
    rerecorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 1 recorded, 0 missed*"])
    assert _owners(url) == {"shared": {"test_one.py::test_one", "test_two.py::test_two"}}, "written again, owned as before"
    env.setenv("ASKS", "one's own question now")
    run(one, "--llm-mode=record", "--llm-prune").assert_outcomes(passed=1)
    env.delenv("ASKS")
    server.stop()
    env.setenv("CI", "true")
    run(two).assert_outcomes(passed=1)


def _interaction(owner: str) -> Interaction:
    request = canonicalize("POST", "https://api.test/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"same"}]}')
    return Interaction.of(request, RecordedResponse(200, "OK", {}, f'{{"by": "{owner}"}}'.encode()), recorded_at="2026-01-01T00:00:00+00:00", tests=(owner,))


def test_two_machines_recording_the_same_request_at_once_both_own_it(redis_server):
    """Both missed, both went live; the later write replaced the earlier one's owners, and the earlier machine's session
    may have ended already (its end adds what its tests used, but only once)."""
    url = redis_server.url()
    first, second = open_store(url), open_store(url)
    try:
        first.put(_interaction("one.py::test_one"))
        second.put(_interaction("two.py::test_two"))  # this machine asked before the first write landed
        reader = open_store(url, readonly=True)
        assert set(reader.index()[0][1]) == {"one.py::test_one", "two.py::test_two"}
        assert reader.get(*_interaction("x").key).response.body == b'{"by": "two.py::test_two"}', "the later answer is the one kept"
        reader.close()
    finally:
        first.close()
        second.close()


def test_a_test_only_another_checkout_has_keeps_its_recordings_over_redis(llm_pytester, redis_server, server, env):
    """Checkout two (a feature branch) adds test_new to a file both checkouts have. Checkout one collects that file whole
    and finds no test_new: it took test_new for a deleted test, holding nothing, and its --llm-prune deleted test_new's
    recording, which two's strict run then missed. Over a shared Redis a test missing here may be another branch's."""
    url, one, two, run = _two_checkouts(llm_pytester, redis_server, server, env)
    (two / "test_two.py").unlink()
    (two / "test_one.py").write_text(ASKING.format(name="one", base_url=server.base_url) + NEW.format(base_url=server.base_url))  # one's file, and test_new

    run(two, "--llm-mode=record").assert_outcomes(passed=2)
    assert _owners(url) == {"shared": {"test_one.py::test_one"}, "new": {"test_one.py::test_new"}}
    run(one, "--llm-mode=replay", "--llm-prune").assert_outcomes(passed=1)
    assert set(_owners(url)) == {"shared", "new"}
    server.stop()
    env.setenv("CI", "true")
    run(two).assert_outcomes(passed=2)


def test_refresh_rewrites_a_damaged_redis_recording_keeping_its_owners(llm_pytester, redis_server, server, env):
    """A recording whose headers another program overwrote: refresh read it first and failed; it now re-records it."""
    url, one, two, run = _two_checkouts(llm_pytester, redis_server, server, env)

    run(one, "--llm-mode=record").assert_outcomes(passed=1)
    run(two, "--llm-mode=record").assert_outcomes(passed=1)
    client = redis_server.client()
    [record] = client.keys(f"{url.rsplit('prefix=', 1)[1]}:rec:*")
    client.hset(record, "headers", "not json")
    run(one, "--llm-mode=refresh").assert_outcomes(passed=1)
    assert _owners(url) == {"shared": {"test_one.py::test_one", "test_two.py::test_two"}}, "re-recorded, owned as before"
    server.stop()
    env.setenv("CI", "true")
    run(two).assert_outcomes(passed=1)
