"""A recording written again in record mode (an answer older than max_age, on_expired = refresh) keeps the tests that
own it, in the committed file: ownership must survive a fresh clone, where no bookkeeping says who else asks it."""

from __future__ import annotations

import json
import sqlite3
import time

from conftest import cassette_file

SHARED = '''
import os

import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])


def test_a(llm_cache):
    ask(os.environ.get("A_ASKS", "shared"))


def test_b(llm_cache):
    ask("shared")
'''


def test_an_expired_answer_re_recorded_by_one_test_stays_owned_by_the_other(llm_pytester, server, env):
    """test_a re-recorded the shared answer alone and the write kept only test_a as its owner; after a fresh clone (no
    bookkeeping), test_a's next partial --llm-prune deleted the answer test_b replays, and test_b's strict run missed."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=SHARED.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    time.sleep(1.1)
    expired = llm_pytester.runpytest("--llm-mode=record", "--cache-clear", "-o", "llm_max_age=1s", "-o", "llm_on_expired=refresh", "test_app.py::test_a")
    expired.assert_outcomes(passed=1)
    expired.stdout.fnmatch_lines(["llm_replay: 0 replayed, 1 recorded, 0 missed*"])
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        owners = [json.loads(row[0]) for row in db.execute("SELECT tests FROM interactions")]
    db.close()
    assert owners == [["test_app.py::test_a", "test_app.py::test_b"]], "written again, owned as before"
    env.setenv("A_ASKS", "test_a's own question now")
    llm_pytester.runpytest("--llm-mode=record", "--cache-clear", "--llm-prune", "test_app.py::test_a").assert_outcomes(passed=1)
    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest("test_app.py::test_b").assert_outcomes(passed=1)
