"""A stored instant that is no date (a hand edit) fails only the test whose instant it is, naming it and the fix; the
session goes on and nothing is changed."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import recorded_damaged_and_sound

pytestmark = pytest.mark.usefixtures("env")


@pytest.mark.parametrize("mode", ["replay", "record"])
def test_a_bad_stored_instant_fails_only_its_test_naming_it_and_the_fix(llm_pytester, server, env, mode):
    """One instant that is no date (a hand edit) stopped the whole session with pytest.exit."""
    path = recorded_damaged_and_sound(llm_pytester, server, env)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE test_instants SET instant = 'last tuesday' WHERE test_id = 'test_app.py::test_damaged'")
    connection.close()
    before = path.read_bytes()
    result = llm_pytester.runpytest(f"--llm-mode={mode}")
    result.assert_outcomes(passed=1, errors=1)
    text = result.stdout.str()
    assert "the stored instant of test test_app.py::test_damaged is 'last tuesday'" in text, text
    assert "pytest --llm-mode=refresh 'test_app.py::test_damaged'" in text
    assert path.read_bytes() == before, "nothing is changed"
    refreshed = llm_pytester.runpytest("--llm-mode=refresh", "test_app.py::test_damaged")
    refreshed.assert_outcomes(passed=1)
    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest().assert_outcomes(passed=2)  # the fix the message names works
