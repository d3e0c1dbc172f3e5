"""Adopt never loses a recording that a test this process cannot see still sends: one in another pytest-xdist worker,
or one left out of the run (a node id) that uses the recording only through the run bookkeeping. The old key stays;
``--llm-prune`` takes it once every test that used it passes without it."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import cassette_file, printed

# The "old SDK" sends ?api-version=…; the upgraded one drops it (same method, host and body: adopt's candidate).
CONFTEST = '''
import os

import openai


def ask(test_name):
    upgraded = test_name in os.environ.get("UPGRADED", "").split(",")
    client = openai.OpenAI(base_url="{base_url}", max_retries=0, default_query=None if upgraded else {{"api-version": "2024-06-01"}})
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "the shared question"}}])
    return answer.choices[0].message.content
'''
TEST_NEW = '''
import os
import pathlib
import time

from conftest import ask


def test_new(llm_cache):
    if os.environ.get("WAIT_FOR_OLD"):  # the other worker's test replays the old key first, then this one adopts it
        deadline = time.monotonic() + 60
        while not pathlib.Path("OLD_ASKED").exists():
            assert time.monotonic() < deadline, "test_old never ran in the other worker"
            time.sleep(0.05)
    print("ANSWER", ask("test_new"))
'''
TEST_OLD = '''
import pathlib

from conftest import ask


def test_old(llm_cache):
    print("ANSWER", ask("test_old"))
    pathlib.Path("OLD_ASKED").touch()
'''
XDIST = ("-p", "xdist", "-p", "llm_replay.pytest_plugin.plugin")


@pytest.fixture
def recorded(llm_pytester, server, env):
    """test_new recorded the answer; test_old, written later, replays it (sending the same request) without owning it."""
    llm_pytester.makeconftest(CONFTEST.format(base_url=server.base_url))
    llm_pytester.makepyfile(test_new=TEST_NEW, test_old=TEST_OLD)
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.runpytest("-s", "--llm-mode=record", "test_new.py").assert_outcomes(passed=1)  # in this process: faster
    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the xdist sessions load exactly these: XDIST
    return llm_pytester


def stored_queries(pytester: pytest.Pytester) -> list[str]:
    with sqlite3.connect(cassette_file(pytester)) as db:
        return sorted(query for (query,) in db.execute("SELECT json_extract(request, '$.query') FROM interactions"))


OLD_KEY, NEW_KEY = '[["api-version","2024-06-01"]]', "[]"


def strict_replay(pytester: pytest.Pytester, env) -> pytest.RunResult:
    """A plain replay, run in this process (no xdist)."""
    env.setenv("CI", "true")
    try:
        return pytester.runpytest(*XDIST, "-s")
    finally:
        env.delenv("CI")


def test_adopt_in_one_xdist_worker_keeps_the_old_key_that_the_other_worker_replays(recorded, server, env):
    """Worker A's test_old replays the old key; worker B's test_new, upgraded, adopts it. B saw no replay of the old
    key (it was A's), and test_new was its only owner: B moved it away, and the next strict run's test_old missed."""
    env.setenv("UPGRADED", "test_new")
    env.setenv("WAIT_FOR_OLD", "1")
    adopted = recorded.runpytest_subprocess(*XDIST, "-s", "-n", "2", "--dist", "loadfile", "--llm-mode=adopt")
    adopted.assert_outcomes(passed=2)
    adopted.stdout.fnmatch_lines(["llm_replay: adopted 1 recording *"])

    env.delenv("WAIT_FOR_OLD")
    replayed = strict_replay(recorded, env)
    replayed.assert_outcomes(passed=2)
    assert stored_queries(recorded) == [OLD_KEY, NEW_KEY], "the new key added, the old one kept"
    assert len(set(printed(replayed, "ANSWER"))) == 1, "both replay the one recorded answer"
    assert len(server.requests) == 1, "only the first recording went to the API"


def test_adopting_one_node_id_keeps_the_old_key_a_test_left_out_of_the_run_uses(recorded, env):
    """test_old replayed the recording in a strict run (its use is in the bookkeeping, not in the cassette: replay writes
    nothing), then only test_new ran in adopt mode: test_new, the recording's only stored owner, moved it away."""
    strict_replay(recorded, env).assert_outcomes(passed=2)
    env.setenv("UPGRADED", "test_new")
    adopted = recorded.runpytest(*XDIST, "--llm-mode=adopt", "--llm-prune", "test_new.py::test_new")
    adopted.assert_outcomes(passed=1)
    adopted.stdout.fnmatch_lines(["llm_replay: adopted 1 recording *", "llm_replay: 0 recordings no longer used by the tests that ran"])
    strict_replay(recorded, env).assert_outcomes(passed=2)
    assert stored_queries(recorded) == [OLD_KEY, NEW_KEY], "test_old's last pass used the old key: even --llm-prune keeps it"

    # test_old upgraded too: once both pass without the old key, --llm-prune takes it.
    env.setenv("UPGRADED", "test_new,test_old")
    pruned = recorded.runpytest_subprocess(*XDIST, "-n", "2", "--llm-mode=adopt", "--llm-prune")
    pruned.assert_outcomes(passed=2)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 1 recording no longer used by the tests that ran, *"])
    assert stored_queries(recorded) == [NEW_KEY]
    strict_replay(recorded, env).assert_outcomes(passed=2)
