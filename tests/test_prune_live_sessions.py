"""A prune while another session runs against the cassette: what that session replays reaches the bookkeeping only when
it ends, so a recording a new test of it replays (one another test owns, whose owner passed without it) was deleted
under it. Each session now notes itself at its first use of the cassette; a prune that would delete something while
another is noted deletes nothing and names it, until it ends (or its process is gone)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import ASK_EACH
from test_prune_round2 import prompts, recorded, recording

from llm_replay.cli import main
from llm_replay.engine.live_sessions import others_running, register
from llm_replay.engine.project import run_ledger
from llm_replay.model.runs import RunRecord
from llm_replay.stores.ledger import RunLedger

APP = '''
import os
import pathlib
import time

import openai
''' + ASK_EACH + '''

def test_owner(llm_cache):
    ask(os.environ.get("OWNER_ASKS", "shared"))


def test_other(llm_cache):
    ask(os.environ.get("OTHER_ASKS", "other"))
    deadline = time.monotonic() + 60
    for ready in filter(None, os.environ.get("AFTER", "").split(os.pathsep)):  # the sessions running meanwhile
        while not pathlib.Path(ready).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pathlib.Path(ready).exists(), f"never written: {{ready}}"
'''
NEW = '''
from test_app import ask, os, pathlib, time


def test_new(llm_cache):
    ask("shared")
    pathlib.Path(os.environ["READY"]).write_text("replayed")
    while not pathlib.Path(os.environ["GO_ON"]).exists():
        time.sleep(0.02)
'''
PLUGINS = ("-p", "xdist", "-p", "llm_replay.pytest_plugin.plugin")  # the sessions in a subprocess load exactly these
NOTHING_ASKED = {"OWNER_ASKS": "", "OTHER_ASKS": ""}  # both tests pass without their recordings: the rule frees them


def _start(pytester: pytest.Pytester, name: str, *args: str) -> tuple[subprocess.Popen[str], Path]:
    """A pytest session in a subprocess that blocks in test_new, after replaying 'shared', until its GO_ON file exists."""
    environ = {**os.environ, **NOTHING_ASKED, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    environ.update(READY=str(pytester.path / f"{name}.ready"), GO_ON=str(pytester.path / f"{name}.go"))
    command = [sys.executable, "-m", "pytest", *PLUGINS, "--llm-mode=replay", *args]
    process = subprocess.Popen(command, cwd=pytester.path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, pytester.path / f"{name}.go"


def test_a_prune_keeps_what_a_running_session_replays_until_it_ends(llm_pytester: pytest.Pytester, server, env, capsys) -> None:
    """Session A (pytest-xdist) runs test_new, which replays test_owner's 'shared'; meanwhile B's run of test_owner and
    test_other, which now ask nothing, frees 'shared' and 'other' by the bookkeeping. B's --llm-prune and llm-replay
    prune deleted both, and A's test_new lost 'shared'. Now both delete nothing, naming A (its controller's pid, not its
    worker's); A's own --llm-prune at its end (its worker's note is its own) deletes 'other' alone: 'shared' is what
    test_new used."""
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url), test_new=NEW)
    cassette = recorded(
        llm_pytester,
        recording(server.base_url, "shared", "test_app.py::test_owner"),
        recording(server.base_url, "other", "test_app.py::test_other"),
    )
    a = _start(llm_pytester, "a", "-n", "1", "--llm-prune")
    try:
        for name, value in NOTHING_ASKED.items():
            env.setenv(name, value)
        env.setenv("AFTER", os.pathsep.join(str(go_on.with_suffix(".ready")) for _, go_on in (a,)))  # B ends after they replayed
        b = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune", "test_app.py")
        b.assert_outcomes(passed=2)
        b.stdout.fnmatch_lines(["llm_replay: 2 recordings no longer used by the tests that ran", "llm_replay: --llm-prune deleted nothing: another pytest session runs against *"])
        refusal = next(line for line in b.outlines if "--llm-prune deleted nothing" in line)
        assert f"pid {a[0].pid} on" in refusal, refusal
        env.chdir(llm_pytester.path)
        capsys.readouterr()
        assert main(["prune"]) == 2
        assert "llm-replay prune: error: deleted nothing (2 recordings would go): another pytest session runs" in capsys.readouterr().err
        assert prompts(cassette) == {"shared", "other"}
        a[1].write_text("go on")
        out = a[0].communicate(timeout=60)[0]
        assert a[0].returncode == 0, out
        assert "llm_replay: --llm-prune deleted 1 recording no longer used by the tests that ran" in out, out
        assert prompts(cassette) == {"shared"}
        assert run_ledger(str(cassette), llm_pytester.path).sessions() == [], "A's end leaves no note"
    finally:
        if a[0].poll() is None:
            a[0].kill()
            a[0].communicate()



def _ago(hours: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat(timespec="microseconds")


def test_a_killed_session_does_not_stop_a_prune_and_another_hosts_counts_for_twelve_hours(llm_pytester: pytest.Pytester, server, env, capsys) -> None:
    """A session killed (SIGKILL) never ends its note: on this host its process is gone, so it does not count. Another
    host's process cannot be asked: its note counts for 12 hours after its session started, then no more."""
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    cassette = recorded(llm_pytester, recording(server.base_url, "other", "test_app.py::test_other"))
    ledger = run_ledger(str(cassette), llm_pytester.path)
    ledger.record(RunRecord("later", _ago(1), _ago(0.9), 1), {"test_app.py::test_other": ()}, {})  # it passed without it
    killed = subprocess.Popen(["sleep", "60"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    register(ledger, "killed", killed.pid, _ago(0))
    ledger.start_session("elsewhere", 1, "elsewhere.invalid", _ago(11))
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "would delete 1 recording" in listed and "(not now: another pytest session runs" in listed and "pid 1 on elsewhere.invalid" in listed, listed
    assert main(["prune"]) == 2
    assert f"pid {killed.pid} " not in capsys.readouterr().err, "the killed session does not count"
    ledger.start_session("elsewhere", 1, "elsewhere.invalid", _ago(13))
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 1 recording")
    assert prompts(cassette) == set() and ledger.sessions() == [], "the notes of sessions gone are dropped"


def test_bookkeeping_that_cannot_be_written_skips_the_note(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "not-a-folder" / "ledger.sqlite3")
    (tmp_path / "not-a-folder").write_text("")
    register(ledger, "uid", os.getpid(), _ago(0))  # raises nothing
    assert others_running(ledger) == []
