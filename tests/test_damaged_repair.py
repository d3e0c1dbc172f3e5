"""Refresh repairs a damaged recording: it re-records it in place, keeping its owners; nothing else changes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import cassette_file

pytestmark = pytest.mark.usefixtures("env")

ASKING = '''
import datetime

import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


def test_damaged(llm_cache):
    assert ask(f"damaged {{datetime.date.today()}}").startswith("echo")


def test_sound(llm_cache):
    assert ask(f"sound {{datetime.date.today()}}").startswith("echo")
'''


def _rows(path: Path) -> dict[str, tuple]:
    """Every recording by its owners, as stored (all columns)."""
    with sqlite3.connect(path) as connection:
        rows = {row[-1]: row for row in connection.execute("SELECT *, tests FROM interactions")}
    connection.close()
    return rows


def _recorded(llm_pytester: pytest.Pytester, server, env) -> Path:
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASKING.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    return cassette_file(llm_pytester)


DAMAGED = json.dumps(["test_app.py::test_damaged"])
SOUND = json.dumps(["test_app.py::test_sound"])
SHARED = json.dumps(["test_app.py::test_damaged", "test_other.py::test_other"])  # another test owns it too


@pytest.mark.parametrize("change", ["headers = 'not json'", "status = 'two hundred'", "body = 42", "recorded_at = 'yesterday'"])
def test_refresh_rewrites_a_damaged_recording_and_nothing_else(llm_pytester, server, env, change):
    """Refresh read the old row first (to keep its other owners, to compare the answers) and failed on it: the one way
    to repair a hand-damaged row short of deleting it did not work."""
    path = _recorded(llm_pytester, server, env)
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE interactions SET {change}, tests = ? WHERE tests = ?", (SHARED, DAMAGED))
    connection.close()
    before = _rows(path)
    result = llm_pytester.runpytest("--llm-mode=refresh", "test_app.py::test_damaged")
    result.assert_outcomes(passed=1)
    after = _rows(path)
    assert after[SOUND] == before[SOUND], "the other test's recording is untouched"
    assert set(after) == {SHARED, SOUND}, "the refreshed recording keeps its key and both its owners"
    assert after[SHARED][:2] == before[SHARED][:2] and after[SHARED] != before[SHARED]
    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest().assert_outcomes(passed=2)  # the repaired recording replays
