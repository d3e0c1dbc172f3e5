"""What the cassette file holds at rest: no deleted bytes (on SQLite builds without secure delete), one plain
file after a pass, a failure, SIGINT or SIGTERM, a readable file after SIGKILL, and no change after a quiet run."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cassette_file

from llm_replay import CassetteError
from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.sqlite import SQLiteCache

ASK = '''

import openai
import pytest


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
'''
PRUNED = "PRUNED-ANSWER-7f3c"  # a prompt (echoed in the answer) whose every byte must leave the file


@pytest.fixture
def upstream_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection starts with secure_delete off, as upstream SQLite builds (most macOS and Windows Pythons) have it."""
    connect = sqlite3.connect

    def without_secure_delete(*args, **kwargs):
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA secure_delete = 0")
        return connection

    monkeypatch.setattr(sqlite3, "connect", without_secure_delete)


def bytes_found(cassette: Path, marker: str) -> list[str]:
    """The files in the cassette's folder (the file, -wal, -shm, journals) whose raw bytes still hold ``marker``."""
    return [path.name for path in sorted(cassette.parent.iterdir()) if marker.encode() in path.read_bytes()]


def _interaction(prompt: str, body: str) -> Interaction:
    request = canonicalize("POST", "https://api.test/v1/chat/completions", f'{{"model":"m","messages":[{{"role":"user","content":"{prompt}"}}]}}'.encode())
    return Interaction.of(request, RecordedResponse(200, "OK", {}, body.encode()), recorded_at="2026-01-01T00:00:00+00:00", tests=("t.py::test",))


def test_the_byte_scan_sees_what_upstream_sqlite_leaves_behind(upstream_sqlite, tmp_path):
    """The control: without llm_replay's pragma, a deleted row's bytes stay in the file, and the scan finds them."""
    path = tmp_path / "plain.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (body TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [(f"{PRUNED} {n}" * 50,) for n in range(20)])
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM t")
    assert bytes_found(path, PRUNED) == ["plain.sqlite3"]


def test_store_delete_and_overwrite_leave_no_bytes(upstream_sqlite, tmp_path):
    """What every delete path stands on (prune, refresh, rm, an import or merge that replaces an entry)."""
    store = SQLiteCache(tmp_path / "c.sqlite3")
    kept = [_interaction(f"kept {n}", "KEPT-ANSWER " * 50) for n in range(20)]
    for interaction in kept:
        store.put(interaction)
    store.put(_interaction("gone", f"{PRUNED} " * 300))
    store.put(_interaction("overwritten", "OVERWRITTEN-OLD " * 300))
    store.put(_interaction("overwritten", "new answer"))
    assert store.delete([_interaction("gone", "").key]) == 1
    store.close()
    assert bytes_found(tmp_path / "c.sqlite3", PRUNED) == [] and bytes_found(tmp_path / "c.sqlite3", "OVERWRITTEN-OLD") == []
    again = SQLiteCache(tmp_path / "c.sqlite3", readonly=True)
    assert len(again) == 21 and again.get(kept[7].fingerprint).response.body == b"KEPT-ANSWER " * 50, "nothing else was lost"
    again.close()


def test_a_closed_cassette_is_never_reopened(tmp_path):
    """A late write (a teardown after the session closed the cassette) is an error naming the file, not a reopening
    that would leave the file in WAL mode with a log beside it."""
    path = tmp_path / "c.sqlite3"
    store = SQLiteCache(path)
    store.put(_interaction("kept", "answer"))
    store.close()
    before = path.read_bytes()
    with pytest.raises(CassetteError, match=f"cassette {path} was already closed"):
        store.put(_interaction("late", "answer"))
    with pytest.raises(CassetteError, match="already closed"):
        store.put_clock_read("t.py::test", True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite3"] and path.read_bytes() == before


def test_the_first_write_to_an_older_cassette_drops_its_run_bookkeeping(upstream_sqlite, tmp_path):
    """Older cassettes kept runs and usage tables in the committed file; that bookkeeping lives in pytest's cache now."""
    path = tmp_path / "c.sqlite3"
    store = SQLiteCache(path)
    store.put(_interaction("kept", "KEPT-ANSWER"))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (uid TEXT PRIMARY KEY, finished_at TEXT NOT NULL, complete INTEGER NOT NULL, scope TEXT)")
        db.execute("CREATE TABLE usage (fingerprint TEXT, occurrence INTEGER, last_run TEXT, replays INTEGER)")
        db.executemany("INSERT INTO runs VALUES (?, '2025-01-01', 1, NULL)", [(f"OLD-RUN-{n} " * 40,) for n in range(30)])
    before = path.read_bytes()
    SQLiteCache(path).close()
    assert path.read_bytes() == before, "opening to write, and writing nothing, changes nothing"
    store = SQLiteCache(path)
    store.put(_interaction("new", "NEW-ANSWER"))
    store.close()
    with sqlite3.connect(path) as db:
        assert {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"meta", "interactions", "test_instants"}
        assert db.execute("SELECT count(*) FROM interactions").fetchone() == (2,)
    assert bytes_found(path, "OLD-RUN-") == []


def _project(pytester: pytest.Pytester, server, env, prompt: str) -> None:
    pytester.makepyfile(test_app=ASK.format(base_url=server.base_url) + f'''

def test_changing(llm_cache):
    ask("{prompt}")


def test_steady(llm_cache):
    ask("steady")
''')
    env.setenv("OPENAI_API_KEY", server.api_key)


@pytest.mark.parametrize("path", ["--llm-prune", "llm-replay prune", "refresh", "refresh under a new secret rule", "llm-replay rm"])
def test_every_delete_path_leaves_no_bytes_in_or_beside_the_file(path, upstream_sqlite, llm_pytester, server, env, capsys):
    _project(llm_pytester, server, env, PRUNED)
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    cassette = cassette_file(llm_pytester)
    assert bytes_found(cassette, PRUNED) == ["llm_cache.sqlite3"]
    with sqlite3.connect(cassette) as db:
        (pruned_key,) = db.execute("SELECT fingerprint FROM interactions WHERE request LIKE ?", (f"%{PRUNED}%",)).fetchone()
    new_prompt = "changed prompt"
    if path == "refresh under a new secret rule":  # the prompt stays; its secret is now scrubbed, so its key changes
        new_prompt = "<scrubbed:TENANT_SECRET>"
        env.setenv("TENANT_SECRET", PRUNED)
        llm_pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nllm_secret_env = TENANT_SECRET\n")
    else:
        _project(llm_pytester, server, env, new_prompt)
    if path.startswith("refresh"):
        llm_pytester.runpytest("--llm-mode=refresh", "test_app.py::test_changing").assert_outcomes(passed=1)
    elif path == "--llm-prune":
        llm_pytester.runpytest("--llm-prune").assert_outcomes(passed=2)
    else:
        llm_pytester.runpytest().assert_outcomes(passed=2)
        env.chdir(llm_pytester.path)
        capsys.readouterr()
        assert main(["prune"] if path == "llm-replay prune" else ["rm", pruned_key[:12]]) == 0
        assert capsys.readouterr().out.splitlines()[-1].startswith("deleted 1 recording")  # rm lists what it deletes first
    assert bytes_found(cassette, PRUNED) == [], f"{path}: the old answer's bytes are gone from the file and from beside it"
    assert sorted(p.name for p in cassette.parent.iterdir()) == ["llm_cache.sqlite3"]
    with sqlite3.connect(cassette) as db:
        prompts = {row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")}
    assert prompts == {new_prompt, "steady"}, "nothing else was lost"


def test_a_quiet_record_run_leaves_the_cassette_byte_identical(llm_pytester, server, env, capsys):
    _project(llm_pytester, server, env, "first")
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    cassette = cassette_file(llm_pytester)
    before = cassette.read_bytes()
    for mode in ("record", "replay"):
        result = llm_pytester.runpytest(f"--llm-mode={mode}")
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(["llm_replay: 2 replayed, 0 recorded, 0 missed in 2 tests*"])
        assert cassette.read_bytes() == before, f"a {mode} run that records nothing leaves the committed file as it was"
        assert sorted(p.name for p in cassette.parent.iterdir()) == ["llm_cache.sqlite3"]
    assert list((llm_pytester.path / ".pytest_cache" / "d" / "llm_replay").glob("llm_cache-*.sqlite3")), "the bookkeeping went to pytest's cache"
    llm_pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)  # no cache dir: the same place by default
    assert cassette.read_bytes() == before
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["stats"]) == 0
    assert "replays so far:    6 " in capsys.readouterr().out, "llm-replay stats reads every run's replays from the bookkeeping"


# -- signals --------------------------------------------------------------------------------------

KILLED = '''

@pytest.mark.parametrize("n", range(5))
def test_question(llm_cache, n):
    ask(f"question {n}")


def test_zz_stopped_here(llm_cache):
    ask("question 5")
    pathlib.Path("READY").write_text("6 recorded")
    time.sleep(120)
'''


def _record_until_signalled(pytester: pytest.Pytester, server, env, signum: int) -> subprocess.Popen:
    pytester.makepyfile(test_killed=ASK.format(base_url=server.base_url) + "import pathlib\nimport time\n" + KILLED)
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    env.setenv("PYTHONFAULTHANDLER", "1")  # SIGABRT prints every thread's stack: where a run that does not stop waits
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "llm_replay.pytest_plugin.plugin", "--llm-mode=record", "test_killed.py"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # A shell's background job ignores SIGINT, and so would the inner run (Python keeps an ignored SIGINT
        # ignored): give it the default, as a terminal's Ctrl-C finds it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (pytester.path / "READY").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (pytester.path / "READY").exists(), "the inner run never reached its last test"
    process.send_signal(signum)
    try:
        process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, _ = process.communicate(timeout=30)
        pytest.fail(f"the run did not stop within 120 s of signal {signum}; where it waited:\n{out[-6000:]}")
    return process


def _prompts(cassette: Path) -> list[str]:
    store = SQLiteCache(cassette, readonly=True)
    try:
        return sorted(i.request.prompt() for i in store.interactions())
    finally:
        store.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_leave_one_plain_file_with_every_recording(signum, llm_pytester, server, env):
    process = _record_until_signalled(llm_pytester, server, env, signum)
    assert process.returncode == pytest.ExitCode.INTERRUPTED
    cassette = cassette_file(llm_pytester)
    assert sorted(p.name for p in cassette.parent.iterdir()) == ["llm_cache.sqlite3"], "no -wal or -shm beside it"
    assert cassette.read_bytes()[18:20] == b"\x01\x01", "rollback-journal mode (WAL would read 2, 2)"
    assert _prompts(cassette) == [f"(user) question {n}" for n in range(6)]


def test_after_sigkill_a_read_only_copy_replays_and_the_next_writing_run_folds_the_log(llm_pytester, server, env):
    process = _record_until_signalled(llm_pytester, server, env, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    cassette = cassette_file(llm_pytester)
    assert cassette.with_name("llm_cache.sqlite3-wal").exists(), "what the killed run committed sits in the log"

    checkout = llm_pytester.path.parent / "read-only-checkout"
    shutil.copytree(llm_pytester.path, checkout)
    (checkout / "READY").unlink()
    files = sorted((checkout / "cassettes").iterdir())
    digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    for path in [*files, checkout / "cassettes"]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    shutil.rmtree(checkout / ".pytest_cache", ignore_errors=True)
    (checkout / ".pytest_cache").write_text("")  # no cache folder can be made here either (permissions do not stop root)
    server.stop()
    env.delenv("OPENAI_API_KEY")
    try:
        replay = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "llm_replay.pytest_plugin.plugin", "-p", "no:cacheprovider", "--llm-mode=replay", "-k", "question"],
            cwd=checkout, capture_output=True, text=True, timeout=300,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "llm_replay: 5 replayed, 0 recorded, 0 missed in 5 tests" in replay.stdout
        assert "llm_replay: this run's bookkeeping was not kept: " in replay.stdout and "Restore it from git" not in replay.stdout
        assert "llm_replay: 0 recordings no longer used by the tests that ran" in replay.stdout
        after = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted((checkout / "cassettes").iterdir())}
        (checkout / ".pytest_cache").unlink()
        assert after == digests, "the read-only checkout was not written to (no -shm index made beside it either)"
    finally:
        for path in [checkout / "cassettes", *files]:
            path.chmod(0o755 if path.is_dir() else 0o644)

    SQLiteCache(cassette).close()  # the next writing run (record, refresh, prune, import) folds the log back
    assert sorted(p.name for p in cassette.parent.iterdir()) == ["llm_cache.sqlite3"]
    assert cassette.read_bytes()[18:20] == b"\x01\x01"
    assert _prompts(cassette) == [f"(user) question {n}" for n in range(6)]


def test_a_cassette_left_in_wal_mode_is_read_without_making_files_beside_it(tmp_path):
    """As older llm_replay left it after Ctrl-C: header in WAL mode, no log. Reading it in place would make -wal/-shm."""
    path = tmp_path / "c.sqlite3"
    store = SQLiteCache(path)
    store.put(_interaction("kept", "answer"))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
    db.close()
    before = path.read_bytes()
    assert before[18:20] == b"\x02\x02" and sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite3"]
    readonly = SQLiteCache(path, readonly=True)
    assert readonly.get(_interaction("kept", "").fingerprint).response.body == b"answer"
    readonly.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite3"] and path.read_bytes() == before
    SQLiteCache(path).close()  # a writing open that writes nothing leaves it as it is; a write folds it back
