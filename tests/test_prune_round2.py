"""Round two of "nothing recorded is lost": a test this run does not define is not a deleted test; a test deleted while
it failed lets go with ``llm-replay rm --test``; a damaged row of the cassette costs the run only that row's bookkeeping;
a run in mode off frees nothing. Cassettes and bookkeeping are seeded as a record run leaves them (each test a run)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ASK_EACH, cassette_file, write_ini
from test_prune_race import FRESH, RefreshedMeanwhile

from llm_replay.cli import main
from llm_replay.cli.selection import Selection
from llm_replay.engine.project import run_ledger
from llm_replay.engine.pruning import prune_unused
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, Key, RecordedResponse
from llm_replay.model.runs import RunRecord
from llm_replay.stores.ledger import RunLedger
from llm_replay.stores.sqlite import SQLiteCache
from llm_replay.stores.spec import open_store

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


def recording(base_url: str, prompt: str, test: str) -> Interaction:
    """What ``test`` recorded asking ``prompt`` as the inner tests ask it, long ago."""
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "model": "gpt-4o-mini"})
    request = canonicalize("POST", f"{base_url}/chat/completions", body, "application/json")
    response = RecordedResponse(200, "OK", {"content-type": ["application/json"]}, b'{"choices": []}')
    return Interaction.of(request, response, recorded_at="2026-01-01T00:00:00+00:00", tests=(test,))


def recorded(pytester: pytest.Pytester, *recordings: Interaction, url: str | None = None) -> Path:
    """The inner project's cassette (its file, or ``url``) holding ``recordings``, and bookkeeping in which each owner
    last passed using its own (what a record run leaves), without running one."""
    path = cassette_file(pytester)
    spec = url or str(path)
    store = open_store(spec)
    for interaction in recordings:
        store.put(interaction)
    store.close()
    passes: dict[str, list[Key]] = {}
    for interaction in recordings:
        for test in interaction.tests:
            passes.setdefault(test, []).append(interaction.key)
    run_ledger(spec, pytester.path).record(RunRecord("recorded", "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00", len(passes)), passes, {})
    return path


def test_a_test_this_run_does_not_define_keeps_its_recordings(llm_pytester: pytest.Pytester, server, env, capsys):
    """test_windows_only exists where ON_WINDOWS is set (a platform, an installed package, an env var). A run without it
    collected the file whole, found no such test and took it for deleted: --llm-prune there deleted its recording, and the
    bookkeeping kept it as passing with nothing, so llm-replay prune did too; the machine that defines it then missed."""
    llm_pytester.makepyfile(test_app=CONDITIONAL.format(base_url=server.base_url))
    path = recorded(
        llm_pytester,
        recording(server.base_url, "always", "test_app.py::test_always"),
        recording(server.base_url, "windows", "test_app.py::test_windows_only"),
    )
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 recordings"), "nor does llm-replay prune"
    assert prompts(path) == {"always", "windows"}


HOLDING = '''
import os

import openai
''' + ASK_EACH + '''

def test_y(llm_cache):
    ask(os.environ.get("Y_ASKS", "y,both"))
'''
BEING_WRITTEN = '''

def test_x(llm_cache):
    ask(os.environ.get("X_ASKS", "x,both"))
    assert not os.environ.get("X_FAILS"), "x is not done yet"
'''


def _redis_prompts(url: str) -> set[str]:
    store = open_store(url, readonly=True)
    try:
        return {interaction.request.body["messages"][0]["content"] for interaction in store.interactions()}  # type: ignore[index]
    finally:
        store.close()


def test_a_failing_test_deleted_since_lets_go_with_rm_by_test_over_redis(llm_pytester: pytest.Pytester, redis_server, server, env, capsys):
    """test_x, being written, replays test_y's answer y and fails; test_y asks nothing now; test_x is given up. Over Redis
    no run can tell a deleted test (it may be another branch's), so test_x held y for ever: llm-replay prune said 'they
    go once those tests pass', which test_x never will; and llm-replay rm --test test_x left its hold on y, and its
    ownership of the answer it shared with test_y ('kept: also used by test_y'): nothing let those go but deleting them
    by key."""
    url = redis_server.url()
    write_ini(llm_pytester, f"llm_cassette = {url}")
    llm_pytester.makepyfile(test_app=HOLDING.format(base_url=server.base_url) + BEING_WRITTEN)
    x, y = "test_app.py::test_x", "test_app.py::test_y"
    both = replace(recording(server.base_url, "both", x), tests=(x, y))
    recorded(llm_pytester, recording(server.base_url, "x", x), both, recording(server.base_url, "y", y), url=url)
    env.setenv("X_ASKS", "y")
    env.setenv("X_FAILS", "1")
    env.setenv("Y_ASKS", "")
    llm_pytester.runpytest("--llm-mode=replay").assert_outcomes(passed=1, failed=1)
    llm_pytester.makepyfile(test_app=HOLDING.format(base_url=server.base_url))  # test_x is given up
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune"]) == 0
    out = capsys.readouterr().out
    assert "kept 1 recording used by tests whose latest run did not pass: test_app.py::test_x" in out, out
    assert "a test deleted since lets them go with llm-replay rm --test <its id>" in out, out
    assert main(["rm", "--test", "test_app.py::test_x"]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "also used by test_app.py::test_y" in out and "deleted 1 recording" in out, out
    assert _redis_prompts(url) == {"y", "both"}
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 2 recordings"), "test_y passed without them; test_x holds nothing now"
    assert _redis_prompts(url) == set()


def test_a_damaged_owners_column_costs_the_run_only_that_rows_bookkeeping(llm_pytester: pytest.Pytester, capsys):
    """One row's tests column overwritten by another program: the end of the run read every row's owners, failed on that
    one and kept none of the run's bookkeeping ('could not record this run's usage'), so no test's pass counted and no
    prune could go on; nor did it name the test whose refresh rewrites the row."""
    llm_pytester.makepyfile(test_app="def test_sound(llm_cache):\n    pass\n")
    damaged = recording("https://api.test/v1", "damaged", "test_app.py::test_damaged")
    path = recorded(llm_pytester, damaged)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET tests = 'not json'")
    db.close()
    ledger = run_ledger(path, llm_pytester.path)
    result = llm_pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"llm_replay: recording {damaged.fingerprint}#0 in *: its owners cannot be read (column tests is 'not json', *), so "
                                 "it is left out of the bookkeeping and pruning, and the rest is kept; a refresh of the test that asks it "
                                 "rewrites it: pytest --llm-mode=refresh 'test_app.py::test_damaged'"])
    assert "test_app.py::test_sound" in ledger.passes(), "this run's bookkeeping is kept"
    llm_pytester.chdir()
    capsys.readouterr()
    assert main(["prune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deleted 0 recordings") and "refresh 'test_app.py::test_damaged'" in out, out


LIVE = '''
import openai


def test_x(llm_cache):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "asked live"}}])
'''


def test_a_run_in_mode_off_frees_nothing(llm_pytester: pytest.Pytester, server, env, capsys):
    """``--llm-mode=off`` calls live and never reads the cassette: its tests passed 'without' every recording they own,
    so the run counted test_x's recording as unused (and --llm-prune deleted it), and the bookkeeping replaced test_x's
    latest pass with one that used nothing, so a later llm-replay prune deleted it too."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=LIVE.format(base_url=server.base_url))
    path = recorded(llm_pytester, recording(server.base_url, "recorded", "test_app.py::test_x"))
    live = llm_pytester.runpytest("--llm-mode=off")
    live.assert_outcomes(passed=1)
    live.stdout.fnmatch_lines(["llm_replay: 0 recordings no longer used by the tests that ran"])
    llm_pytester.chdir()
    capsys.readouterr()
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 recordings")
    assert len(SQLiteCache(path, readonly=True)) == 1


def test_rm_by_test_outside_the_project_releases_nothing(llm_pytester: pytest.Pytester, server, env, capsys):
    """Run from a folder outside the project (with --cassette), every test's file is missing there: rm --test must not take
    that for deleted tests and strip the test's ownership of what it shares."""
    llm_pytester.makepyfile(test_app=HOLDING.format(base_url=server.base_url) + BEING_WRITTEN)
    x, y = "test_app.py::test_x", "test_app.py::test_y"
    path = recorded(llm_pytester, recording(server.base_url, "x", x), replace(recording(server.base_url, "both", x), tests=(x, y)))
    elsewhere = llm_pytester.mkdir("elsewhere")
    (elsewhere / "pytest.ini").write_text("[pytest]\n")
    env.chdir(elsewhere)
    assert main(["rm", "--test", x, "--cassette", str(path)]) == 0
    assert "not defined in this checkout" not in capsys.readouterr().out
    assert [row.tests for row in Selection().select(SQLiteCache(path, readonly=True).summaries())] == [(x, y)], "x deleted, both kept as it was"


def test_an_owners_key_another_program_overwrote_costs_llm_replay_prune_only_that_recording_over_redis(llm_pytester, redis_server, server, env, capsys):
    """Another program wrote a string where a recording's owners set lives: reading the index failed with WRONGTYPE, so
    llm-replay prune (and the end of every run, which keeps no bookkeeping then) stopped at it."""
    url = redis_server.url()
    write_ini(llm_pytester, f"llm_cassette = {url}")
    damaged = recording(server.base_url, "damaged", "test_app.py::test_damaged")
    recorded(llm_pytester, damaged, recording(server.base_url, "sound", "test_app.py::test_sound"), url=url)
    owners = f"{url.rsplit('prefix=', 1)[1]}:owners:{damaged.fingerprint}:0"
    redis_server.client().set(owners, "not a set")
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deleted 0 recordings"), out
    assert f"recording {damaged.fingerprint}#0 in {url}: its owners cannot be read ({owners} holds" in out, out
    assert f"remove it first: redis-cli DEL {owners}" in out and "pytest --llm-mode=refresh 'test_app.py::test_damaged'" in out, out


def test_a_prune_that_lost_a_race_reads_what_is_left_past_a_damaged_row(tmp_path: Path) -> None:
    """A prune that deleted fewer recordings than it chose (another session wrote one again meanwhile) reads what is left
    to forget the rest in the bookkeeping: that read stopped at a damaged owners column, after the delete, with an error."""
    cassette, other = SQLiteCache(tmp_path / "cassette.sqlite3"), SQLiteCache(tmp_path / "cassette.sqlite3")
    try:
        chosen, gone = (recording("https://api.test/v1", prompt, "t.py::test_a") for prompt in ("chosen", "gone"))
        for interaction in (chosen, gone, recording("https://api.test/v1", "damaged", "t.py::test_b")):
            cassette.put(interaction)
        with sqlite3.connect(tmp_path / "cassette.sqlite3") as db:
            db.execute("UPDATE interactions SET tests = 'not json' WHERE tests LIKE '%test_b%'")
        db.close()
        ledger = RunLedger(tmp_path / "ledger.sqlite3")
        ledger.record(RunRecord("run", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00", 1), {"t.py::test_a": ()}, {})
        lines = prune_unused(RefreshedMeanwhile(cassette, other, replace(chosen, recorded_at=FRESH)), ledger, tmp_path)  # type: ignore[arg-type]
        assert lines[0].startswith("deleted 1 recording"), lines
        assert cassette.get(*chosen.key) is not None and cassette.get(*gone.key) is None
    finally:
        cassette.close()
        other.close()
