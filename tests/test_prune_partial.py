"""A partial view of the suite frees nothing it cannot see: a parametrized case that this run did not collect, while its
test function still is (parameters that depend on the platform, the installed packages or the environment), keeps its
recordings; the run on the machine that has the case still replays them."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import cassette_file

APP = '''
import os

import openai
import pytest


@pytest.mark.parametrize("backend", os.environ["BACKENDS"].split(","))
def test_backend(llm_cache, backend):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": backend}}])
'''


def test_a_case_this_run_does_not_collect_keeps_its_recordings(llm_pytester: pytest.Pytester, server, env):
    """Linux collects test_backend[linux] and [mac]; a --llm-prune run on the other machine, which collects only
    [mac], took [linux] for a deleted test holding nothing and deleted its recording, and Linux's CI missed."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    env.setenv("BACKENDS", "linux,mac")
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    env.setenv("BACKENDS", "mac")
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        assert db.execute("SELECT count(*) FROM interactions").fetchone() == (2,)
    db.close()
    server.stop()
    env.setenv("CI", "true")
    env.setenv("BACKENDS", "linux,mac")
    llm_pytester.runpytest().assert_outcomes(passed=2)
