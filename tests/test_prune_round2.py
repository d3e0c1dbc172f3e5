"""Round two of "nothing recorded is lost": a test this run does not define is not a deleted test, and a damaged row of
the cassette costs the run only that row's bookkeeping."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import cassette_file

from llm_replay.cli import main

CONDITIONAL = '''
import os

import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])


def test_always(llm_cache):
    ask("always")


if os.environ.get("ON_WINDOWS"):
    def test_windows_only(llm_cache):
        ask("windows")
'''


def prompts(cassette: Path) -> set[str]:
    with sqlite3.connect(cassette) as db:
        found = {row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")}
    db.close()
    return found


def test_a_test_this_run_does_not_define_keeps_its_recordings(llm_pytester: pytest.Pytester, server, env, capsys):
    """test_windows_only exists where ON_WINDOWS is set (a platform, an installed package, an env var). A run without it
    collected the file whole, found no such test and took it for deleted: --llm-prune there deleted its recording, and the
    bookkeeping kept it as passing with nothing, so llm-replay prune did too; the machine that defines it then missed."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=CONDITIONAL.format(base_url=server.base_url))
    env.setenv("ON_WINDOWS", "1")
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    env.delenv("ON_WINDOWS")
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 recordings"), "nor does llm-replay prune"
    assert prompts(cassette_file(llm_pytester)) == {"always", "windows"}
