"""One Redis for a fleet, as users meet it: pytest sessions from several checkouts record into it at once and a
third replays from it; ``llm-replay copy`` snapshots it into a file that replays with no network; the server
killed mid-session fails tests clearly and never turns into a live call; its password shows up nowhere."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_ini
from redis_server import RedisServer, require_redis

from llm_replay.stores.spec import open_store

PASSWORD = "pw-Fleet-2b9d41c7e5"
ONLY_OUR_PLUGINS = ("-p", "xdist", "-p", "llm_replay.pytest_plugin.plugin")

ASK = '''
import datetime
import os
import signal
import socket
import time

import openai
import pytest


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


def kill_redis():
    """SIGKILL the shared Redis, and wait until its port refuses connections."""
    os.kill(int(os.environ["TEST_REDIS_PID"]), signal.SIGKILL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", int(os.environ["TEST_REDIS_PORT"])), timeout=1).close()
            time.sleep(0.01)
        except OSError:
            return
'''


def checkout_tests(name: str, count: int) -> str:
    """``count`` tests asking distinct questions; the first one's prompt carries the frozen wall clock."""
    return f'''

def test_{name}_asks_with_the_date(llm_cache):
    assert ask(f"{name}: what happened on {{datetime.datetime.now().isoformat()}}?").startswith("echo")


@pytest.mark.parametrize("n", range({count - 1}))
def test_{name}_asks(llm_cache, n):
    assert ask(f"{name} question {{n}}").startswith("echo")
'''


# Every test here, inner sessions included, runs in a new user's shell (conftest's env).
pytestmark = pytest.mark.usefixtures("env")


@pytest.fixture
def locked_redis(tmp_path: Path):
    """A redis-server of this test's own that asks for a password."""
    require_redis()
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    yield server
    server.stop()


def _session_env(**extra: str) -> dict[str, str]:
    """The environment of a session in another checkout (the ``env`` fixture has cleaned ours)."""
    return {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "TEAM_REDIS_PASSWORD": PASSWORD, **extra}


def _checkout(root: Path, name: str, modules: dict[str, str], ini: str = "") -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "pytest.ini").write_text(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}")
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(source)
    return folder


def _pytest(folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *ONLY_OUR_PLUGINS, "-p", "no:cacheprovider", *args],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finished(process: subprocess.Popen[str], outputs: list[str]) -> str:
    out, _ = process.communicate(timeout=240)
    outputs.append(out)
    return out


def test_a_fleet_records_into_one_redis_replays_from_it_and_copies_it_into_a_file(tmp_path, server, locked_redis, env):
    url = f"redis://:${{TEAM_REDIS_PASSWORD}}@127.0.0.1:{locked_redis.port}/0?prefix=fleet"  # as a committed ini holds it
    shown = f"redis://127.0.0.1:{locked_redis.port}/0?prefix=fleet"
    head = ASK.format(base_url=server.base_url)
    modules = {"test_a": head + checkout_tests("a", 6), "test_b": head + checkout_tests("b", 6)}
    outputs: list[str] = []

    # Two checkouts record at the same time, one of them with two xdist workers; the second names the
    # cassette on the command line, password and all.
    first = _checkout(tmp_path, "checkout_a", {"test_a": modules["test_a"]}, f"llm_cassette = {url}\n")
    second = _checkout(tmp_path, "checkout_b", {"test_b": modules["test_b"]})
    recording = _session_env(OPENAI_API_KEY=server.api_key)
    a = _pytest(first, recording, "--llm-mode=record", "-o", "log_cli=true", "--log-cli-level=DEBUG")  # every logger's output shown too
    b = _pytest(second, recording, "--llm-mode=record", "-n", "2", f"--llm-cassette=redis://:{PASSWORD}@127.0.0.1:{locked_redis.port}/0?prefix=fleet")
    out_a, out_b = _finished(a, outputs), _finished(b, outputs)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    assert "DEBUG" in out_a, "the live log shows DEBUG records"
    assert f"llm_replay: 0 replayed, 6 recorded, 0 missed in 6 tests (mode record, cassette {shown})" in out_a
    assert f"llm_replay: 0 replayed, 6 recorded, 0 missed in 6 tests (mode record, cassette {shown})" in out_b
    assert len(server.requests) == 12
    store = open_store(locked_redis.url("fleet"), readonly=True)
    try:
        assert len(store) == 12, "nothing lost"
        assert {owner for _, owners, _ in store.index() for owner in owners} == {
            *(f"test_a.py::test_a_asks[{n}]" for n in range(5)), "test_a.py::test_a_asks_with_the_date",
            *(f"test_b.py::test_b_asks[{n}]" for n in range(5)), "test_b.py::test_b_asks_with_the_date",
        }
        assert {test for test, _, _ in store.instants()} >= {"test_a.py::test_a_asks_with_the_date", "test_b.py::test_b_asks_with_the_date"}
    finally:
        store.close()

    # A third checkout, with no key and no LLM server, replays everything from Redis; a new test misses strictly.
    server.stop()
    third = _checkout(tmp_path, "checkout_c", {**modules, "test_new": head + checkout_tests("new", 2)}, f"llm_cassette = {url}\n")
    replay = _session_env(CI="true")
    out = _finished(_pytest(third, replay, "-o", "log_cli=true", "--log-cli-level=DEBUG"), outputs)
    assert "12 passed" in out and "2 failed" in out, out
    assert f"llm_replay: 12 replayed, 0 recorded, 2 missed in 14 tests (mode replay, cassette {shown})" in out
    assert "CassetteMiss: no recording for this request (mode 'replay'" in out and f"cassette:  {shown} (12 recordings)" in out

    # llm-replay copy snapshots Redis into the checkout's file; with Redis gone too, the file replays everything.
    copy = subprocess.run(
        [sys.executable, "-m", "llm_replay", "copy", url, "cassettes/llm_cache.sqlite3"], cwd=third, env=replay, capture_output=True, text=True
    )
    outputs += [copy.stdout, copy.stderr]
    assert copy.returncode == 0, copy.stderr
    assert copy.stdout.strip() == f"copied 12 recordings from {shown} to cassettes/llm_cache.sqlite3 (0 already there; 12 test instants)"
    locked_redis.stop()
    (third / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    out = _finished(_pytest(third, replay, "test_a.py", "test_b.py"), outputs)
    assert "12 passed" in out and "llm_replay: 12 replayed, 0 recorded, 0 missed in 12 tests (mode replay, cassette cassettes/llm_cache.sqlite3)" in out

    # The password was on a command line and in the environment; it is in no output (logs included) and no file.
    leaks = [text for text in outputs if PASSWORD in text]
    assert not leaks, leaks[0]
    files = [path for path in tmp_path.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()]
    assert not files, files


def test_redis_holds_no_password_and_no_url(locked_redis, server, llm_pytester, env):
    """What a session writes into Redis (recordings, owners, instants) carries neither the password nor the URL."""
    url = locked_redis.url("stored")
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASK.format(base_url=server.base_url) + checkout_tests("app", 2))
    llm_pytester.runpytest("--llm-mode=record", f"--llm-cassette={url}").assert_outcomes(passed=2)
    client = locked_redis.client()
    values = b"".join(client.dump(key) for key in client.keys("stored:*"))
    assert client.scard("stored:keys") == 2 and client.hlen("stored:instants") == 2
    assert PASSWORD.encode() not in values and str(locked_redis.port).encode() + b"/0" not in values


def test_a_replay_session_reads_its_tests_recordings_ahead_a_window_at_a_time(redis_server, server, llm_pytester, env):
    """40 one-call tests replay with two scripts for their recordings and clocks (two windows of 32), not 80 round
    trips; the savings line then reads the 40 replayed recordings in one pipeline, not 40 round trips."""
    url = redis_server.url()
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASK.format(base_url=server.base_url) + checkout_tests("app", 40))
    llm_pytester.runpytest("--llm-mode=record", f"--llm-cassette={url}").assert_outcomes(passed=40)
    server.stop()
    client = redis_server.client()
    client.config_resetstat()
    result = llm_pytester.runpytest("--llm-mode=replay", f"--llm-cassette={url}")
    result.assert_outcomes(passed=40)
    result.stdout.fnmatch_lines(["*llm_replay: 40 replayed, 0 recorded, 0 missed in 40 tests*"])
    stats = client.info("commandstats")
    scripts, lookups = stats["cmdstat_evalsha"]["calls"], stats.get("cmdstat_hgetall", {}).get("calls", 0)
    assert scripts == 2 and lookups == 80, f"{scripts} scripts run, {lookups} recordings read: {stats}"


def _durable(tmp_path: Path) -> RedisServer:
    require_redis()
    return RedisServer(tmp_path / "durable", durable=True).start()


KILLED = '''

@pytest.mark.parametrize("n", range(3))
def test_before(llm_cache, n):
    ask(f"before {{n}}")


def test_server_killed_then_asks(llm_cache):
    kill_redis()
    ask("{asked_after_kill}")


def test_after(llm_cache):
    ask("after")
'''


def test_redis_killed_while_recording_keeps_what_was_recorded_and_fails_clearly(tmp_path, llm_pytester, server, env):
    redis = _durable(tmp_path)
    try:
        url = redis.url("killed")
        shown = url  # no password: the URL is shown whole
        env.setenv("OPENAI_API_KEY", server.api_key)
        env.setenv("TEST_REDIS_PID", str(redis.process.pid))
        env.setenv("TEST_REDIS_PORT", str(redis.port))
        llm_pytester.makepyfile(test_killed=ASK.format(base_url=server.base_url) + KILLED.format(asked_after_kill="during"))
        result = llm_pytester.runpytest("--llm-mode=record", f"--llm-cassette={url}")
        result.assert_outcomes(passed=3, failed=2)  # test_after's clock was read ahead: it fails at its call, not its setup
        result.stdout.fnmatch_lines([
            f"*llm_replay.CassetteError: cannot reach the Redis cassette {shown} (*); start the server or fix the URL*",
            f"*CassetteMiss: POST http://127.0.0.1:*/v1/chat/completions could not be looked up: cannot reach the Redis cassette {shown} (*",
            f"*CassetteMiss: POST http://127.0.0.1:*/v1/chat/completions could not be looked up: cannot reach the Redis cassette {shown} (*",
            f"llm_replay: could not record this run's usage: cannot reach the Redis cassette {shown}*",
        ])
        assert [request["json"]["messages"][0]["content"] for request in server.requests] == [f"before {n}" for n in range(3)], "nothing went live after the fault"

        redis.start()  # the same server again: what was recorded before the kill is there
        store = open_store(url, readonly=True)
        try:
            assert sorted(i.request.prompt() for i in store.interactions()) == [f"(user) before {n}" for n in range(3)]
        finally:
            store.close()
    finally:
        redis.stop()


def test_redis_killed_while_replaying_never_becomes_a_live_call(tmp_path, llm_pytester, server, env):
    redis = _durable(tmp_path)
    try:
        url = redis.url("replayed")
        env.setenv("OPENAI_API_KEY", server.api_key)
        llm_pytester.makepyfile(test_killed=ASK.format(base_url=server.base_url) + KILLED.format(asked_after_kill="before 2"))
        llm_pytester.runpytest("--llm-mode=record", f"--llm-cassette={url}", "-k", "before").assert_outcomes(passed=3)
        asked = len(server.requests)

        env.delenv("OPENAI_API_KEY")
        env.setenv("CI", "true")
        env.setenv("TEST_REDIS_PID", str(redis.process.pid))
        env.setenv("TEST_REDIS_PORT", str(redis.port))
        # The LLM server still answers: only llm_replay stands between the killed cassette and a live call.
        result = llm_pytester.runpytest(f"--llm-cassette={url}", "-k", "not before[2]")
        result.assert_outcomes(passed=2, failed=2)  # test_after's clock was read ahead: it fails at its call, not its setup
        result.stdout.fnmatch_lines([
            f"*llm_replay.CassetteError: cannot reach the Redis cassette {url} (*",
            f"*CassetteMiss: POST http://127.0.0.1:*/v1/chat/completions could not be looked up: cannot reach the Redis cassette {url} (*",
            "llm_replay: 2 replayed, 0 recorded, 2 missed in 4 tests (mode replay*",
        ])
        assert len(server.requests) == asked
    finally:
        redis.stop()


def test_redis_unreachable_at_the_start_fails_every_test_clearly(llm_pytester, server, env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    write_ini(llm_pytester, f"llm_cassette = redis://:{PASSWORD}@127.0.0.1:{port}/0?prefix=nowhere\n")
    llm_pytester.makepyfile(test_app=ASK.format(base_url=server.base_url) + checkout_tests("app", 2))
    env.setenv("OPENAI_API_KEY", server.api_key)
    result = llm_pytester.runpytest("--llm-mode=record")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([f"*llm_replay.CassetteError: cannot reach the Redis cassette redis://127.0.0.1:{port}/0?prefix=nowhere (*"])
    assert PASSWORD not in result.stdout.str() + result.stderr.str()
    assert server.requests == []


def test_a_password_given_in_the_urls_query_shows_up_nowhere(locked_redis, server, llm_pytester, env):
    """redis-py takes the password from ``?password=`` as well as from ``:password@``: both are hidden the same way, in
    the summary line, a miss, the bookkeeping's name, the HTML report and the ledger."""
    port = locked_redis.port
    url, shown = f"redis://127.0.0.1:{port}/0?prefix=query&password={PASSWORD}", f"redis://127.0.0.1:{port}/0?prefix=query"
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASK.format(base_url=server.base_url) + checkout_tests("app", 2))
    recorded = llm_pytester.runpytest("--llm-mode=record", f"--llm-cassette={url}")
    recorded.assert_outcomes(passed=2)
    llm_pytester.makepyfile(test_new=ASK.format(base_url=server.base_url) + checkout_tests("new", 1))
    replayed = llm_pytester.runpytest("--llm-mode=replay", f"--llm-cassette={url}", "--llm-report=report.html")
    replayed.assert_outcomes(passed=2, failed=1, skipped=1)  # the new module's empty parametrize is skipped
    replayed.stdout.fnmatch_lines([f"*2 replayed, 0 recorded, 1 missed in 3 tests (mode replay, cassette {shown})*"])
    printed = recorded.stdout.str() + recorded.stderr.str() + replayed.stdout.str() + replayed.stderr.str()
    assert PASSWORD not in printed
    files = [path for path in llm_pytester.path.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()]
    assert [path.name for path in files] == [], "the report and the bookkeeping hold no password"


def _every_value(client, prefix: str) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    """What each key under the prefix holds, serialised by the server: to tell that nothing changed."""
    return {name: client.dump(name) for name in client.scan_iter(match=f"{prefix}:*")}


def test_a_value_llm_replay_cannot_read_fails_its_test_naming_the_key_and_is_kept(redis_server, server, llm_pytester, env, capsys):
    """A recording whose headers are not JSON, a status that is no number, a key of the wrong type: each fails what reads
    it with an error naming the key and what to do, in a session and in ``llm-replay``; nothing is rewritten or deleted."""
    from llm_replay.cli import main

    prefix = "damaged"
    url = redis_server.url(prefix)
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASK.format(base_url=server.base_url) + checkout_tests("app", 4))
    llm_pytester.runpytest("--llm-mode=record", f"--llm-cassette={url}").assert_outcomes(passed=4)
    client = redis_server.client()
    records = sorted(client.scan_iter(match=f"{prefix}:rec:*"))
    client.hset(records[0], "headers", "{not json")
    client.hset(records[1], "status", "two hundred")
    owners = records[2].replace(b":rec:", b":owners:")
    client.delete(owners)
    client.set(owners, "a string where llm_replay keeps a set")
    before = _every_value(client, prefix)

    for mode in ("replay", "record"):
        result = llm_pytester.runpytest(f"--llm-mode={mode}", f"--llm-cassette={url}")
        result.assert_outcomes(passed=1, failed=3)
        text = result.stdout.str()
        for name, what in ((records[0], "field headers is not JSON"), (records[1], "field status is not a number")):
            assert f"key {name.decode()} is not a recording llm_replay can read ({what}" in text, text
        assert f"key {owners.decode()} is a string, where llm_replay keeps a set" in text, text
        assert "Traceback" not in text and "JSONDecodeError" not in text
    assert _every_value(client, prefix) == before, "nothing rewritten, nothing deleted"

    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["ls", "--cassette", url]) == 2
    error = capsys.readouterr().err
    assert "(llm_replay changed nothing)" in error and any(f"key {name.decode()} " in error for name in (*records[:2], owners)), error
    assert _every_value(client, prefix) == before
