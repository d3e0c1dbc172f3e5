"""What a test used in a run it did not pass is kept until it passes again, by ``llm-replay prune`` and by a later
``pytest --llm-prune`` of another selection alike: the bookkeeping used to remember passes only, so a test that
failed while replaying another test's recording (say a new test, in CI) held nothing once that run was over."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import cassette_file

from llm_replay.cli import main

APP = '''
import os

import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])


def test_x(llm_cache):
    ask(os.environ.get("X_ASKS", "x"))
    assert os.environ.get("X_FAILS") != "1", "x is not done yet"


def test_y(llm_cache):
    ask(os.environ.get("Y_ASKS", "y"))
'''


def prompts(cassette: Path) -> set[str]:
    with sqlite3.connect(cassette) as db:
        found = {row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")}
    db.close()
    return found


@pytest.fixture
def project(llm_pytester: pytest.Pytester, server, env) -> pytest.Pytester:
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    llm_pytester.runpytest("--llm-mode=replay").assert_outcomes(passed=2)  # each test's latest pass begins after every recording
    env.chdir(llm_pytester.path)
    return llm_pytester


@pytest.mark.parametrize("mode", ["replay", "record"])
def test_a_recording_a_failing_test_used_is_kept_until_that_test_passes(project, env, capsys, mode):
    """test_x, being rewritten, now asks what test_y recorded, and fails; test_y then changes its question and passes
    without its old recording. That recording is all test_x has: no prune may take it while test_x has not passed."""
    env.setenv("X_ASKS", "y")
    env.setenv("X_FAILS", "1")
    project.runpytest(f"--llm-mode={mode}", "test_app.py::test_x").assert_outcomes(failed=1)
    env.setenv("Y_ASKS", "y2")
    pruned = project.runpytest("--llm-mode=record", "--llm-prune", "test_app.py::test_y")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    assert "y" in prompts(cassette_file(project)), "a later --llm-prune of another test keeps it"
    capsys.readouterr()
    for args in (["prune", "--dry-run"], ["prune"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "kept 1 recording used by tests whose latest run did not pass: test_app.py::test_x" in out, out
    assert {"y", "y2", "x"} <= prompts(cassette_file(project)), "llm-replay prune keeps it and says why"
    env.delenv("X_FAILS")
    env.setenv("X_ASKS", "x")
    project.runpytest("--llm-mode=record", "test_app.py::test_x").assert_outcomes(passed=1)  # done: x asks its own again
    capsys.readouterr()
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 1 recording"), "once test_x passes without it, it goes"
    assert prompts(cassette_file(project)) == {"x", "y2"}


def test_a_recording_made_by_a_test_that_failed_after_its_call_is_kept(project, env, capsys):
    """The test records a new answer and then fails (its assertion, after the call): the answer stays, as do its older ones."""
    env.setenv("X_ASKS", "x2")
    env.setenv("X_FAILS", "1")
    project.runpytest("--llm-mode=record").assert_outcomes(passed=1, failed=1)
    capsys.readouterr()
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 recordings")
    assert prompts(cassette_file(project)) == {"x", "x2", "y"}


def test_a_refresh_of_the_owner_keeps_what_a_failing_test_used(project, env):
    """test_y's refresh replaces what it owned and no longer asks, deleting a recording left with no owner: test_x,
    which failed while replaying it, held it only in the bookkeeping, and lost it."""
    env.setenv("X_ASKS", "y")
    env.setenv("X_FAILS", "1")
    project.runpytest("--llm-mode=replay", "test_app.py::test_x").assert_outcomes(failed=1)
    env.setenv("Y_ASKS", "y2")
    refreshed = project.runpytest("--llm-mode=refresh", "test_app.py::test_y")
    refreshed.assert_outcomes(passed=1)
    assert "refresh replaced" not in refreshed.stdout.str()
    assert prompts(cassette_file(project)) == {"x", "y", "y2"}


def test_rm_by_test_keeps_what_a_failing_test_used(project, env, capsys):
    """``rm --test`` keeps a recording another test also uses: it looked at owners and latest passes only, so the one a
    failing test replays went with its owner's other recordings."""
    env.setenv("X_ASKS", "y")
    env.setenv("X_FAILS", "1")
    project.runpytest("--llm-mode=replay", "test_app.py::test_x").assert_outcomes(failed=1)
    capsys.readouterr()
    assert main(["rm", "--test", "test_app.py::test_y"]) == 0
    out = capsys.readouterr().out
    assert "also used by test_app.py::test_x" in out, out
    assert prompts(cassette_file(project)) == {"x", "y"}
