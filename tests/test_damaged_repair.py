"""Refresh repairs a damaged recording: it re-records it in place, keeping its owners; nothing else changes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import recorded_damaged_and_sound

pytestmark = pytest.mark.usefixtures("env")


def _rows(path: Path) -> dict[str, tuple]:
    """Every recording by its owners, as stored (all columns)."""
    with sqlite3.connect(path) as connection:
        rows = {row[-1]: row for row in connection.execute("SELECT *, tests FROM interactions")}
    connection.close()
    return rows


DAMAGED = json.dumps(["test_app.py::test_damaged"])
SOUND = json.dumps(["test_app.py::test_sound"])
SHARED = json.dumps(["test_app.py::test_damaged", "test_other.py::test_other"])  # another test owns it too


@pytest.mark.parametrize("change", ["headers = 'not json'", "status = 'two hundred'", "body = 42", "recorded_at = 'yesterday'"])
def test_refresh_rewrites_a_damaged_recording_and_nothing_else(llm_pytester, server, env, change):
    """Refresh read the old row first (to keep its other owners, to compare the answers) and failed on it: the one way
    to repair a hand-damaged row short of deleting it did not work."""
    path = recorded_damaged_and_sound(llm_pytester, server, env)
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
