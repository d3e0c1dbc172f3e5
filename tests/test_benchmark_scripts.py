"""Every script in benchmarks/ still starts, and the parts that can run in a second do, at their smallest size.

The benchmarks call the library's inner API (stores, the recorder, the CLI's main), which moves under them without
any test noticing: audit_speed.py and adopt_speed.py (which builds its cassette with audit_speed's ``build``) stopped
with "no such table: interactions" once SQLiteCache made its file at the first write instead of when opened. Here
each script runs as ``__main__`` with ``--help`` (every import it makes at the top, and its options), and the cassette
builders and replay rows run at a few recordings. The measurements themselves (minutes each) are not run.

In this process rather than one per script: importing the openai SDK alone takes ~1.5 s of CPU, paid here once.
"""

from __future__ import annotations

import importlib.util
import re
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py"))


@pytest.fixture
def benchmarks_importable(monkeypatch):
    """benchmarks/ on sys.path as when a script runs (they import each other); what they import from there, and
    what they add to sys.path themselves, is gone again afterwards."""
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if str(BENCHMARKS) in (getattr(sys.modules[name], "__file__", None) or ""):
            del sys.modules[name]


def run_script(monkeypatch, script: str, *args: str) -> None:
    """``python benchmarks/<script> <args>``, in this process."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(BENCHMARKS / script), run_name="__main__")


def test_the_benchmarks_folder_holds_the_scripts_these_tests_know():
    # a new script gets its --help check below by itself; this keeps the list from silently going empty
    assert {"audit_speed.py", "adopt_speed.py", "cli_scale.py", "run.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports_and_answers_help(script, benchmarks_importable, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exited:
        run_script(monkeypatch, script, "--help")
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {script}")


def test_audit_speed_builds_its_cassette_and_times_the_audit(benchmarks_importable, monkeypatch, capsys):
    run_script(monkeypatch, "audit_speed.py", "20")
    out = capsys.readouterr().out
    assert re.search(r"^20 recordings, [\d.]+ MB file: audit took [\d.]+ s, [\d.]+ MB/s \(exit 0\)$", out, re.M), out


def test_adopt_speed_adopts_every_request_it_asks_again(benchmarks_importable, monkeypatch, capsys):
    run_script(monkeypatch, "adopt_speed.py", "20", "5")
    out = capsys.readouterr().out
    assert re.search(r"^20 recordings: the first adoption .* 4 more took [\d.]+ ms each \(5 adopted\)$", out, re.M), out


def test_cli_scale_builds_its_cassette_and_run_bookkeeping(benchmarks_importable, tmp_path):
    from llm_replay.stores.sqlite import SQLiteCache

    cli_scale = runpy.run_path(str(BENCHMARKS / "cli_scale.py"))
    path = tmp_path / "scale.sqlite3"
    cli_scale["build"](path, 5)
    cassette = SQLiteCache(path, readonly=True)
    try:
        assert len(cassette) == 5
    finally:
        cassette.close()


@pytest.fixture(scope="module")
def run_py():
    spec = importlib.util.spec_from_file_location("llm_replay_bench_run_smoke", BENCHMARKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_run_py_replays_from_its_sqlite_and_in_memory_cassettes(run_py, tmp_path):
    # run.py's replay rows at 3 recordings, 2 calls, one round: the cassettes it builds, use_cassette, the recorder;
    # its transport raises if a replay reaches it, so each row is a real replay
    rows = run_py.replay_rows(tmp_path, [3], 2, 1)
    assert [row.name for row in rows] == [
        "llm_replay replay, SQLite, 3 interactions",
        "llm_replay replay, in-memory, 3 interactions",
        "llm_replay replay streaming, SQLite, 3 interactions",
    ]
    assert all(row.median_us > 0 for row in rows)


def test_run_py_says_which_anchor_is_missing_instead_of_stopping(run_py):
    # pytest-recording and cassetter come from the bench extra, in a venv of their own: without one, its row says so
    for missing, module in ((run_py.pytest_recording_missing(), "pytest_recording"), (run_py.cassetter_missing(), "cassetter")):
        if importlib.util.find_spec(module) is None:
            assert missing and "not installed" in missing
        else:
            assert missing is None


def test_run_py_times_two_sessions_run_at_once_each_by_its_own_cpu(run_py, tmp_path, monkeypatch):
    # run.py's session rows start a tool's session and its floor together (the VM's drift hits both alike) and must
    # still tell their CPU apart: a session that spins 0.3 s of CPU beside one that does nothing, started second
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # bare sessions: a second each, not several
    busy, idle = tmp_path / "busy", tmp_path / "idle"
    for project, body in ((busy, "import time\n    end = time.process_time() + 0.3\n    while time.process_time() < end:\n        pass"), (idle, "pass")):
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_it.py").write_text(f"def test_it():\n    {body}\n")
    sessions = run_py.Session(busy, [], False), run_py.Session(idle, [], False)
    busy_s, idle_s = run_py.run_pair(*sessions, swap=True)
    assert busy_s > idle_s + 0.2
    (idle / "test_it.py").write_text("def test_it():\n    assert 'spelled in the output' == ''\n")
    with pytest.raises(RuntimeError, match="spelled in the output"):
        run_py.run_pair(*sessions)
