"""A pytest-xdist worker SIGKILLed in a test: what its tests used must still keep their recordings from pruning. The
tests it finished sent their use with their reports; the one it died in sent nothing (xdist's default ``--dist load``
does not run it again), so --llm-prune deletes nothing in that run. A test that failed keeps what it used too."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import cassette_file

from llm_replay.cli import main

CONFTEST = '''
import functools
import os

import openai


@functools.cache
def client():
    return openai.OpenAI(base_url="{base_url}", max_retries=0)


def ask(prompt):
    return client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


def stage():
    return int(os.environ["STAGE"])
'''
# test_a recorded two answers, then changed its prompt; test_k.py, written after that recording, replays them.
TEST_A = '''
from conftest import ask, stage


def test_a(llm_cache):
    if stage() == 1:
        ask("shared one")
        ask("shared two")
    else:
        ask("only a")
'''
TEST_K = '''
import os

from conftest import ask, stage


def test_before(llm_cache):  # finishes, on either worker: its use came with its report
    if stage() > 1:
        ask("shared one")


def test_killed(llm_cache):
    if stage() > 1:
        ask("shared two")
    if os.environ.get("END") == "killed":
        os.kill(os.getpid(), 9)
    if os.environ.get("END") == "interrupted":  # Ctrl-C: no report, no teardown
        raise KeyboardInterrupt
    assert os.environ.get("END") != "failed", "failed after its replay"
'''
XDIST = ("-p", "xdist", "-p", "llm_replay.pytest_plugin.plugin")


def stored_prompts(pytester: pytest.Pytester) -> set[str]:
    with sqlite3.connect(cassette_file(pytester)) as db:
        return {prompt for (prompt,) in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")}


EVERY = {"shared one", "shared two", "only a"}
PRUNED = {
    "killed": [
        "*worker 'gw*' crashed while running 'test_k.py::test_killed'*",
        "llm_replay: --llm-prune deleted nothing: the pytest-xdist worker running test_k.py::test_killed crashed, so what "
        "it used is unknown; run the tests again to prune",
    ],
    "failed": ["llm_replay: --llm-prune deleted 0 recordings no longer used by the tests that ran, *"],
}


def recorded_then_changed(llm_pytester: pytest.Pytester, server, env) -> None:
    """test_a records both shared answers, then changes its prompt; the fake server stops and the runs go offline."""
    llm_pytester.makeconftest(CONFTEST.format(base_url=server.base_url))
    llm_pytester.makepyfile(test_a=TEST_A, test_k=TEST_K)
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("STAGE", "1")  # recorded in this process (a subprocess costs seconds); the runs that kill or fork are not
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=3)
    env.setenv("STAGE", "2")  # test_a no longer asks the shared questions; test_k.py replays them
    llm_pytester.runpytest("--llm-mode=record", "test_a.py").assert_outcomes(passed=1)
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")


@pytest.mark.parametrize("end", PRUNED)
def test_prune_keeps_what_a_test_that_died_or_failed_used_without_owning_it(llm_pytester, server, env, capsys, end):
    """test_killed, newer than the recording it replays, owns nothing and never passed: only this run knows it uses
    "shared two", whose owner test_a passed without it. A failing test's use keeps it; a killed one's never arrives."""
    recorded_then_changed(llm_pytester, server, env)

    env.setenv("END", end)
    pruning = llm_pytester.runpytest_subprocess(*XDIST, "-n", "2", "--llm-prune")
    pruning.assert_outcomes(passed=2, failed=1)
    pruning.stdout.fnmatch_lines(PRUNED[end])
    assert stored_prompts(llm_pytester) == EVERY

    env.delenv("END")
    llm_pytester.runpytest_subprocess(*XDIST, "-n", "2").assert_outcomes(passed=3)
    capsys.readouterr()
    assert main(["prune", "--cassette", str(cassette_file(llm_pytester))]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 recordings")
    assert stored_prompts(llm_pytester) == EVERY, "every recording a test uses is kept"


def test_an_interrupted_run_prunes_nothing(llm_pytester, server, env):
    """Ctrl-C in test_killed, after its replay: what it used never reaches a report, and the tests after it never ran."""
    recorded_then_changed(llm_pytester, server, env)
    env.setenv("END", "interrupted")
    interrupted = llm_pytester.runpytest_subprocess(*XDIST, "--llm-prune")
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    interrupted.stdout.fnmatch_lines(
        ["llm_replay: --llm-prune deleted nothing: the run was interrupted, so what its last test used is unknown; run the tests again to prune"]
    )
    assert stored_prompts(llm_pytester) == EVERY
