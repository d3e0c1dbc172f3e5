"""Nothing lost: 4 xdist workers on one cassette, a SIGKILL mid-run, read-only and too-new cassettes, binary and 20 MB bodies."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import cassette_file

from llm_replay.stores.sqlite import SQLiteCache

ASK = '''
import functools

import openai
import pytest

BASE_URL = "{base_url}"


@functools.cache
def client():
    return openai.OpenAI(base_url=BASE_URL, max_retries=0)  # one a process: each builds an SSL context (~50 ms)


def ask(prompt):
    return client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
'''
WORKER_TESTS = 40
# Subprocess runs load only what they need: every worker importing every installed plugin costs seconds.
ONLY_OUR_PLUGINS = ("-p", "xdist", "-p", "llm_replay.pytest_plugin.plugin")


def test_four_xdist_workers_record_into_one_cassette_and_lose_nothing(llm_pytester, server, env):
    pytest.importorskip("xdist")
    llm_pytester.makepyfile(test_many=ASK.format(base_url=server.base_url) + f'''

@pytest.mark.parametrize("n", range({WORKER_TESTS}))
def test_question(llm_cache, n):
    assert ask(f"question {{n}}").choices[0].message.content.startswith(f"echo[0]: question {{n}}")
''')
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    recorded = llm_pytester.runpytest_subprocess(*ONLY_OUR_PLUGINS, "-n", "4", "--llm-mode=record")
    recorded.assert_outcomes(passed=WORKER_TESTS)
    recorded.stdout.fnmatch_lines([
        f"llm_replay: 0 replayed, {WORKER_TESTS} recorded, 0 missed in {WORKER_TESTS} tests (mode record*",
        "llm_replay: 0 recordings no longer used by the tests that ran",  # the controller hears what every test used
    ])
    assert "locked" not in recorded.stdout.str() + recorded.stderr.str()
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        prompts = {row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")}
    assert prompts == {f"question {n}" for n in range(WORKER_TESTS)}

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest_subprocess(*ONLY_OUR_PLUGINS, "-n", "4")
    replayed.assert_outcomes(passed=WORKER_TESTS)
    replayed.stdout.fnmatch_lines([
        f"llm_replay: {WORKER_TESTS} replayed, 0 recorded, 0 missed in {WORKER_TESTS} tests (mode replay*",
        "llm_replay: 0 recordings no longer used by the tests that ran",
    ])
    (ledger,) = (llm_pytester.path / ".pytest_cache" / "d" / "llm_replay").iterdir()
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT count(*) FROM passes").fetchone()[0] == WORKER_TESTS, "every worker's tests, by node id"
        assert db.execute("SELECT sum(replays) FROM usage").fetchone()[0] == WORKER_TESTS, "the replay run's replays"


def test_sigkill_while_recording_keeps_every_earlier_interaction(llm_pytester, server, env):
    llm_pytester.makepyfile(test_killed=ASK.format(base_url=server.base_url) + '''
import pathlib
import time


@pytest.mark.parametrize("n", range(5))
def test_question(llm_cache, n):
    ask(f"question {n}")


def test_zz_killed_here(llm_cache):
    pathlib.Path("READY").write_text("5 recorded")
    time.sleep(120)
''')
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *ONLY_OUR_PLUGINS, "-p", "no:cacheprovider", "--llm-mode=record", "test_killed.py"],
        cwd=llm_pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (llm_pytester.path / "READY").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (llm_pytester.path / "READY").exists(), "the inner run never reached its last test"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL

    cassette = cassette_file(llm_pytester)
    readonly = SQLiteCache(cassette, readonly=True)  # how CI opens it next
    assert sorted(i.request.prompt() for i in readonly.interactions()) == [f"(user) question {n}" for n in range(5)]
    readonly.close()
    SQLiteCache(cassette).close()  # the next recording run folds the write-ahead log back into the file
    assert not cassette.with_name(cassette.name + "-wal").exists()
    with sqlite3.connect(cassette) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM interactions").fetchone() == (5,)


def _record_one(pytester: pytest.Pytester, server, env) -> bytes:
    pytester.makepyfile(test_one=ASK.format(base_url=server.base_url) + '''

def test_known(llm_cache):
    ask("known")


def test_new(llm_cache):
    ask("new")
''')
    env.setenv("OPENAI_API_KEY", server.api_key)
    pytester.runpytest("--llm-mode=record", "-k", "known").assert_outcomes(passed=1)
    return cassette_file(pytester).read_bytes()


def test_read_only_cassette_in_record_mode_fails_clearly_before_any_live_call(llm_pytester, server, env):
    before = _record_one(llm_pytester, server, env)
    cassette = cassette_file(llm_pytester)
    cassette.chmod(0o444)
    asked = len(server.requests)
    result = llm_pytester.runpytest("--llm-mode=record")
    message = (
        f"ERROR: llm_replay.CassetteError: cassette {cassette} is read-only (file permissions) but this run records into it; "
        f"it was left untouched. Make it writable (chmod u+w {cassette}) or only replay (--llm-mode=replay)"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines.count(message) == 1 and "CassetteError" not in result.stdout.str(), "the session stops once, with one message"
    assert len(server.requests) == asked and cassette.read_bytes() == before
    llm_pytester.runpytest("--llm-mode=replay", "-k", "known").assert_outcomes(passed=1)


def test_immutable_cassette_in_record_mode_names_the_attribute_not_chmod(llm_pytester, server, env):
    """Its permissions allow writing, so "chmod u+w" would not help: the message says what would."""
    before = _record_one(llm_pytester, server, env)
    cassette = cassette_file(llm_pytester)
    made = subprocess.run(["chattr", "+i", str(cassette)], capture_output=True, text=True) if shutil.which("chattr") else None
    if made is None or made.returncode != 0:
        pytest.skip(f"needs chattr +i on {cassette.parent} (root, a filesystem with attributes): {made.stderr.strip() if made else 'no chattr'}")
    try:
        result = llm_pytester.runpytest("--llm-mode=record")
    finally:
        subprocess.run(["chattr", "-i", str(cassette)], check=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*cassette {cassette} cannot be written by this user although its permissions allow it (an immutable attribute, chattr +i;*lsattr {cassette}*"])
    assert "chmod u+w" not in result.stderr.str() and cassette.read_bytes() == before


def test_cassette_from_a_newer_schema_is_refused_and_left_alone(llm_pytester, server, env):
    _record_one(llm_pytester, server, env)
    cassette = cassette_file(llm_pytester)
    with sqlite3.connect(cassette) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = cassette.read_bytes()
    for mode in ("replay", "record"):
        result = llm_pytester.runpytest(f"--llm-mode={mode}", "-k", "known")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([
            f"ERROR: llm_replay.CassetteError: cassette {cassette} was written by a newer llm_replay (schema 99, this one reads up to 1); "
            "upgrade llm_replay: update its checkout and pip install -e it again",
        ])
    assert cassette.read_bytes() == before


@pytest.mark.parametrize("version", ["abc", "2.0"])
def test_cassette_with_a_damaged_schema_version_is_refused_by_name_not_an_internal_error(llm_pytester, server, env, version):
    _record_one(llm_pytester, server, env)
    cassette = cassette_file(llm_pytester)
    with sqlite3.connect(cassette) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    before = cassette.read_bytes()
    result = llm_pytester.runpytest("--llm-mode=replay", "-k", "known")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: llm_replay.CassetteError: cassette {cassette} is damaged: its schema_version is '{version}', not a number*git checkout -- {cassette}*"])
    assert cassette.read_bytes() == before


def test_a_folder_where_the_cassette_should_be_is_named_with_the_fix(llm_pytester):
    llm_pytester.makepyfile(test_one="def test_one(llm_cache):\n    pass\n")
    folder = llm_pytester.path / "cassettes" / "llm_cache.sqlite3"
    folder.mkdir(parents=True)
    result = llm_pytester.runpytest("--llm-mode=replay")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llm_replay.CassetteError: cassette {folder} is a folder; a cassette is one file: point --llm-cassette*{folder / 'llm_cache.sqlite3'}"])


def test_binary_non_json_and_20_mb_bodies_replay_byte_for_byte(llm_pytester, server, env):
    llm_pytester.makepyfile(test_bodies=ASK.format(base_url=server.base_url) + '''
import hashlib
import os
import httpx


def test_bodies(llm_cache):
    client = openai.OpenAI(base_url=BASE_URL, max_retries=0)
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="hello")
    big = client.files.content("file-20971520")
    upload = httpx.post(BASE_URL + "/uploads/raw", content=bytes(range(256)) * 4,
                        headers={"content-type": "application/octet-stream", "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    digest = lambda data: hashlib.sha256(data).hexdigest()
    print("BODIES", digest(speech.content), digest(big.content), len(big.content), upload.status_code, upload.text)
''')
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    server.stop()
    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=1)

    def bodies(result: pytest.RunResult) -> str:
        return next(line for line in result.outlines if "BODIES" in line).split("BODIES ", 1)[1]

    assert bodies(replayed) == bodies(recorded)
    assert " 20971520 404 " in bodies(replayed) and "Invalid URL (POST /v1/uploads/raw)" in bodies(replayed)
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        kinds = dict(db.execute("SELECT json_extract(request, '$.path'), typeof(body) FROM interactions"))
        request_kinds = {row[0] for row in db.execute("SELECT json_extract(request, '$.body_kind') FROM interactions")}
    assert kinds == {"/v1/audio/speech": "blob", "/v1/files/file-20971520/content": "text", "/v1/uploads/raw": "text"}
    assert request_kinds == {"json", "empty", "bytes"}
