"""A strict miss or a blocked attempt in a forked child process fails the test that forked it."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")

# A test module's start: ask(question) through the openai SDK at the fake server.
ASKING = '''
import multiprocessing
import socket

import openai


def ask(question):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": question}}]).choices[0].message.content
'''

FORKING_TESTS = ASKING + '''

def test_miss_in_a_pool(llm_cache):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map_async(ask, ["Capital of France?"]).get(timeout=30)  # a worker killed by the miss never answers


def test_miss_in_a_process_whose_exit_code_nobody_reads(llm_cache):
    child = multiprocessing.get_context("fork").Process(target=ask, args=("Capital of Spain?",))
    child.start()
    child.join(30)


def _swallowed_lookup():
    try:
        socket.getaddrinfo("child.example.invalid", 443)
    except BaseException:
        pass


def test_blocked_in_a_child_without_llm_cache():
    child = multiprocessing.get_context("fork").Process(target=_swallowed_lookup)
    child.start()
    child.join(30)


def test_after_them():
    pass
'''


def test_a_forked_childs_miss_or_blocked_attempt_fails_the_test_and_no_pool_hangs(llm_pytester, server):
    """CassetteMiss is a BaseException: a pool's worker, which catches Exception, died of it and map() waited for
    ever; a miss in a Process whose exit code nobody read died with the child and the test passed."""
    llm_pytester.makepyfile(test_forks=FORKING_TESTS.format(base_url=server.base_url))
    result = llm_pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(["*_ test_miss_in_a_pool _*", "E *llm_replay.CassetteMiss: no recording for this request (mode 'replay'*", "E *prompt:    (user) Capital of France?"])
    result.stdout.fnmatch_lines([
        "*_ test_miss_in_a_process_whose_exit_code_nobody_reads _*",
        "llm_replay.CassetteMiss (caught by the code under test, still a failure):",
        "in a forked child process (pid * forked by test_forks.py::test_miss_in_a_process_whose_exit_code_nobody_reads): no recording for this request*",
    ])
    result.stdout.fnmatch_lines([
        "*_ test_blocked_in_a_child_without_llm_cache _*",
        "llm_replay.NetworkBlocked (caught by the code under test, still a failure):",
        "in a forked child process (pid * forked by test_forks.py::test_blocked_in_a_child_without_llm_cache): llm_replay blocked an attempt to look up child.example.invalid:443*",
    ])
    assert [line.split(" - ")[0] for line in result.outlines if line.startswith("FAILED")] == [
        f"FAILED test_forks.py::{name}" for name in ("test_miss_in_a_pool", "test_miss_in_a_process_whose_exit_code_nobody_reads", "test_blocked_in_a_child_without_llm_cache")
    ]
    assert server.requests == [], "nothing reached the server"


POOL_OF_ASKS = ASKING + '''

def test_asks_in_a_pool(llm_cache):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print("ANSWERS", pool.map(ask, ["Capital of France?", "Capital of Peru?"]))
'''


def test_what_forked_children_record_and_replay_is_the_tests_own_and_no_prune_deletes_it(llm_pytester, server, env):
    """The children's replays were counted nowhere: the run said 0 replayed and 2 recordings unused, and
    --llm-prune deleted both, so the next strict run missed."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_pool=POOL_OF_ASKS.format(base_url=server.base_url))
    recorded = llm_pytester.runpytest("--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 2 recorded, 0 missed in 1 test*"])
    server.stop()
    env.setenv("CI", "true")
    pruned = llm_pytester.runpytest("--llm-prune")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: 2 replayed, 0 recorded, 0 missed in 1 test*", "llm_replay: 0 recordings no longer used by the tests that ran"])
    llm_pytester.runpytest().assert_outcomes(passed=1)


TERMINATED_CHILD = '''
import multiprocessing
import signal
import time


def test_a_terminated_child_ends_as_sigterm_ends_it(llm_cache):
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
    child.start()
    time.sleep(0.2)
    child.terminate()
    child.join(10)
    assert child.exitcode == -signal.SIGTERM
'''


def test_a_forked_child_ends_on_sigterm_as_without_the_plugin_in_record_mode(llm_pytester):
    """Record mode turns SIGTERM into a clean stop of the session; a forked child inherited that handler, printed
    that the session stops, and exited 1 instead of dying of the signal."""
    llm_pytester.makepyfile(test_terminate=TERMINATED_CHILD)
    result = llm_pytester.runpytest("--llm-mode=record")
    result.assert_outcomes(passed=1)
    assert "llm_replay stops the session" not in result.stdout.str() + result.stderr.str()
