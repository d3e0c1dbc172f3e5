"""``llm-replay`` over a Redis cassette: copy between any two stores (a union, both ways), ls/show/stats/audit/diff
reading it, pruning it; and the replay network guard letting the cassette's own server through."""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from llm_replay import NetworkBlocked
from llm_replay.cli import main
from llm_replay.cli.audit import audit_for
from llm_replay.engine.recorder import Recorder
from llm_replay.engine.settings import Mode
from llm_replay.layers.activation import activated
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.memory import InMemoryCache
from llm_replay.stores.spec import open_store

MONDAY, TUESDAY = datetime(2026, 3, 2, 9, tzinfo=timezone.utc), datetime(2026, 3, 3, 9, tzinfo=timezone.utc)


def _recording(prompt: str, answer: str = "same", tests: tuple[str, ...] = ("t.py::test_x",)) -> Interaction:
    request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", f'{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{prompt}"}}]}}'.encode())
    body = f'{{"choices": [{{"message": {{"content": "{answer}"}}}}]}}'.encode()
    return Interaction.of(request, RecordedResponse(200, "OK", {"content-type": ["application/json"]}, body), recorded_at="2026-03-02T09:00:00+00:00", tests=tests)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _fill(spec: str, *recordings: Interaction, instants: dict[str, datetime] = {}) -> None:  # noqa: B006 - read only
    store = open_store(spec)
    try:
        for recording in recordings:
            store.put(recording)
        for test_id, instant in instants.items():
            store.put_instant(test_id, instant)
            store.put_clock_read(test_id, True)
    finally:
        store.close()


def _contents(spec: str) -> tuple[dict, dict]:
    store = open_store(spec, readonly=True)
    try:
        recordings = {i.request.prompt(): (i.response.body, i.tests) for i in store.interactions()}
        return recordings, {test: (instant, read) for test, instant, read in store.instants()}
    finally:
        store.close()


def test_copy_is_a_union_both_ways_with_instants_and_owners(redis_url, tmp_path, capsys):
    seed = str(tmp_path / "seed.sqlite3")
    _fill(seed, _recording("shared", tests=("t.py::test_file",)), _recording("clash", "file answer"), _recording("only in the file"),
          instants={"t.py::test_file": MONDAY, "t.py::test_both": MONDAY})
    _fill(redis_url, _recording("shared", tests=("t.py::test_fleet",)), _recording("clash", "fleet answer"), _recording("only in redis"),
          instants={"t.py::test_fleet": TUESDAY, "t.py::test_both": TUESDAY})

    # SQLite -> Redis (seeding a fleet): what Redis lacks is added; Redis's own answers and instants win.
    code, out, _ = _run(capsys, "copy", seed, redis_url)
    assert code == 0
    assert "kept ours for" in out and "(gpt-4o-mini): recorded 2026-03-02T09:00:00+00:00; theirs from 2026-03-02T09:00:00+00:00 ignored" in out
    assert out.splitlines()[-1] == f"copied 1 recordings from {seed} to {redis_url} (1 already there; 1 recorded differently in both (kept {redis_url}'s); 1 test instants)"
    recordings, instants = _contents(redis_url)
    assert recordings == {
        "(user) shared": (_recording("shared").response.body, ("t.py::test_file", "t.py::test_fleet")),  # owned by both sides' tests
        "(user) clash": (_recording("clash", "fleet answer").response.body, ("t.py::test_x",)),
        "(user) only in redis": (_recording("x").response.body, ("t.py::test_x",)),
        "(user) only in the file": (_recording("x").response.body, ("t.py::test_x",)),
    }
    assert instants == {"t.py::test_fleet": (TUESDAY, True), "t.py::test_both": (TUESDAY, True), "t.py::test_file": (MONDAY, True)}

    # Redis -> a new file (the snapshot to commit): everything, instants and owners included.
    snapshot = str(tmp_path / "snapshot.sqlite3")
    code, out, _ = _run(capsys, "copy", redis_url, snapshot)
    assert code == 0 and out.strip() == f"copied 4 recordings from {redis_url} to {snapshot} (0 already there; 3 test instants)"
    assert _contents(snapshot) == (recordings, instants)
    # ... and the seed file, which only gave, lost nothing.
    assert _contents(seed)[0]["(user) clash"][0] == _recording("clash", "file answer").response.body and len(_contents(seed)[0]) == 3

    code, _, err = _run(capsys, "copy", str(tmp_path / "missing.sqlite3"), redis_url)
    assert code == 2 and "no cassette at" in err and "missing.sqlite3" in err


def test_ls_show_stats_diff_and_audit_read_redis(redis_url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a GitHub token that no scrubbing rule knows
    _fill(redis_url, _recording("Capital of France", tests=("test_app.py::test_capital",)), _recording("leaky", f"here is {token}"))

    code, out, _ = _run(capsys, "ls", "--cassette", redis_url)
    assert code == 0 and out.splitlines()[-1] == "2 recordings"
    capital = next(line for line in out.splitlines() if "Capital of France" in line)
    assert "test_app.py::test_capital" in capital and "POST api.openai.com/v1/chat/completions" in capital

    code, out, _ = _run(capsys, "show", capital.split()[0][:8], "--cassette", redis_url)
    assert code == 0 and "tests:     test_app.py::test_capital" in out and '"content": "Capital of France"' in out

    code, out, _ = _run(capsys, "stats", "--cassette", redis_url)
    assert code == 0 and f"cassette:          {redis_url}\n" in out and "recordings:        2" in out and "last run:          none recorded yet" in out

    copy = str(tmp_path / "copy.sqlite3")
    assert _run(capsys, "copy", redis_url, copy)[0] == 0
    code, out, _ = _run(capsys, "diff", redis_url, copy)
    assert code == 0 and out.strip() == f"no differences between {redis_url} and {copy}"
    _fill(redis_url, _recording("only in redis"))
    code, out, _ = _run(capsys, "diff", copy, redis_url)
    assert code == 1 and "+ " in out and "(user) only in redis" in out and out.splitlines()[-1].startswith("1 added, 0 removed, 0 changed")

    code, out, _ = _run(capsys, "audit", redis_url)
    prefix = redis_url.rpartition("prefix=")[2]
    assert code == 1 and token not in out
    assert f"{redis_url}: key {prefix}:rec:" in out and ", field body (JSON, keys included): GitHub token 'ghp_A1…Q7r8'" in out

    code, out, _ = _run(capsys, "rm", capital.split()[0][:8], "--cassette", redis_url)
    assert code == 0 and out.strip().splitlines()[-1] == f"deleted 1 recording from {redis_url}"  # after the table of what goes
    assert "(user) Capital of France" not in _contents(redis_url)[0] and len(_contents(redis_url)[0]) == 2


REDIS_PLACES = ("meta", "instants", "runs", "usage", "owners", "reason", "jsonkey", "headername", "body", "foreign string", "foreign set")


def test_audit_reads_every_key_under_the_prefix_and_scrub_removes_every_secret_from_it_alone(redis_url, redis_server, tmp_path, capsys, env, monkeypatch):
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_secret_env = TENANT_CREDS\n")
    env.setenv("TENANT_CREDS", "tenant-credential-value-1")  # secret only by the project's ini
    monkeypatch.chdir(tmp_path)
    planted = {place: "sk-" + "ant-api03-" + hashlib.sha256(place.encode()).hexdigest()[:32] for place in REDIS_PLACES}  # an Anthropic key's shape
    prefix = redis_url.rpartition("prefix=")[2]
    neighbour = redis_url.replace(f"prefix={prefix}", f"prefix={prefix}x")  # another project on the same server
    clean, leaky = _recording("clean", tests=("t.py::test_clean",)), _recording("leaky")
    _fill(redis_url, clean, leaky)
    _fill(neighbour, _recording("theirs", planted["body"]))
    client = redis_server.client()
    record = f"{prefix}:rec:{leaky.fingerprint}:0"
    client.hset(f"{prefix}:meta", "note", planted["meta"])
    client.hset(f"{prefix}:instants", f"t.py::test[{planted['instants']}]", "2025-01-01T00:00:00+00:00")
    client.hset(f"{prefix}:runs", planted["runs"], '["2025-01-01", true, null]')
    client.hset(f"{prefix}:usage:run", f"{leaky.fingerprint}:0", planted["usage"])
    client.sadd(f"{prefix}:owners:{leaky.fingerprint}:0", f"t.py::test_x[{planted['owners']}]")
    request = json.loads(client.hget(record, "request"))
    request["body"][planted["jsonkey"]] = 1
    client.hset(record, mapping={
        "reason": planted["reason"], "request": json.dumps(request), "body": json.dumps({"text": f"{planted['body']} tenant-credential-value-1"}),
        "headers": json.dumps({planted["headername"]: ["1"], "authorization": ["Bearer token-from-an-older-writer"]}),
    })
    client.set(f"{prefix}:notes", planted["foreign string"])  # what some other tool left under the prefix
    client.sadd(f"{prefix}:tags", planted["foreign set"])

    code, out, _ = _run(capsys, "audit", redis_url)
    assert code == 1 and not [place for place, value in planted.items() if value in out], "every value masked"
    audit, paths = audit_for(argparse.Namespace(paths=[redis_url], secret_env=[], secret_pattern=[]))
    values = {finding.value for path in paths for finding in audit.scan_path(path)}
    assert {place for place, value in planted.items() if value in values} == set(planted) and "tenant-credential-value-1" in values
    assert f"{redis_url}: key {prefix}:instants, name of field t.py::…" in out and f"key {prefix}:tags, member: " in out
    assert f"key {record}, field headers: credential header 'authorization' stored" in out
    assert f"Remove them with: llm-replay scrub '{redis_url}'" in out

    code, out, _ = _run(capsys, "scrub", redis_url)
    assert code == 0 and out.splitlines()[-1] == "llm-replay scrub: 1 files scrubbed; 0 secrets left"
    assert _run(capsys, "audit", redis_url)[0] == 0
    stored = b"".join(_every_byte(client, f"{prefix}:*"))
    assert [place for place, value in planted.items() if value.encode() in stored] == [] and b"tenant-credential-value-1" not in stored
    assert b"token-from-an-older-writer" not in stored
    assert planted["body"].encode() in b"".join(_every_byte(client, f"{prefix}x:*")), "the neighbour's keys are theirs"
    store = open_store(redis_url, readonly=True)
    try:  # keys kept: what was clean is as it was, and the scrubbed recording still replays under its key
        assert store.get(clean.fingerprint) == open_store(neighbour).scrubber.interaction(clean)
        assert json.loads(store.get(leaky.fingerprint).response.body) == {"text": "<scrubbed> <scrubbed:TENANT_CREDS>"}
    finally:
        store.close()


def _every_byte(client, pattern: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    found = []
    for name in client.scan_iter(match=pattern):
        kind = client.type(name)
        value = {b"hash": client.hgetall, b"set": client.smembers, b"string": client.get}[kind](name)
        found += [name, *(value.items() if isinstance(value, dict) else value if isinstance(value, set) else [value])]
    return [part for item in found for part in (item if isinstance(item, tuple) else (item,))]


def test_pruning_redis_deletes_only_what_every_owning_test_passed_without(llm_pytester, server, env, redis_url, capsys):
    from test_cli import app_tests

    env.setenv("OPENAI_API_KEY", server.api_key)
    env.chdir(llm_pytester.path)
    cassette = f"--llm-cassette={redis_url}"
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Tell me a joke", "Weather in Paris"))
    llm_pytester.runpytest("--llm-mode=record", cassette).assert_outcomes(passed=3)

    # the weather test asks something else now: its old answer goes; the joke test is gone from this checkout, which over
    # a shared Redis may be another branch's test still: its answer stays, for llm-replay rm
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Weather in Lyon"))
    result = llm_pytester.runpytest("--llm-mode=record", "--llm-prune", cassette)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"llm_replay: --llm-prune deleted 1 recording no longer used by the tests that ran, from {redis_url}"])
    assert sorted(_contents(redis_url)[0]) == ["(user) Capital of France", "(user) Tell me a joke", "(user) Weather in Lyon"]

    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Weather in Paris"))  # back to Paris
    llm_pytester.runpytest("--llm-mode=record", cassette).assert_outcomes(passed=2)
    code, out, _ = _run(capsys, "prune", "--dry-run", "--cassette", redis_url)
    assert code == 0 and out.startswith("would delete 1 recording that every owning test passed without:") and len(_contents(redis_url)[0]) == 4
    code, out, _ = _run(capsys, "prune", "--cassette", redis_url)
    assert code == 0 and out.strip() == f"deleted 1 recording that every owning test passed without, from {redis_url}"
    assert sorted(_contents(redis_url)[0]) == ["(user) Capital of France", "(user) Tell me a joke", "(user) Weather in Paris"]
    code, out, _ = _run(capsys, "rm", "--test", "test_app.py::test_tell", "--cassette", redis_url)  # the deleted test's, by name
    assert code == 0 and sorted(_contents(redis_url)[0]) == ["(user) Capital of France", "(user) Weather in Paris"]


def test_replay_lets_the_cassettes_own_server_through_the_network_guard():
    cassette = InMemoryCache()
    cassette.hosts = ("192.0.2.10",)  # where a fleet's Redis would live (an address resolved without any lookup)
    with activated(Recorder(cassette, Mode.REPLAY)):
        assert socket.getaddrinfo("192.0.2.10", 6379, proto=socket.IPPROTO_TCP)[0][4][:2] == ("192.0.2.10", 6379)
        with pytest.raises(NetworkBlocked, match="192.0.2.11"):
            socket.getaddrinfo("192.0.2.11", 6379)


def test_a_replay_session_lets_its_redis_through_the_session_guard_and_the_child_process_fence(tmp_path):
    from llm_replay.engine.settings import CacheSettings
    from llm_replay.pytest_plugin.suite import Suite

    suite = Suite(Mode.REPLAY, True, "redis://:pw-Fence-5d1e@192.0.2.10:6379/0?prefix=app", CacheSettings(), tmp_path)
    suite.go_offline(lambda: "advice")
    try:  # a test that does not use llm_cache is held to the session's guard; the suite cassette is opened there too
        assert socket.getaddrinfo("192.0.2.10", 6379, proto=socket.IPPROTO_TCP)[0][4][:2] == ("192.0.2.10", 6379)
        with pytest.raises(NetworkBlocked, match="192.0.2.11"):
            socket.getaddrinfo("192.0.2.11", 6379)
        children = suite._offline[1].environment
        assert "192.0.2.10" in children["NO_PROXY"].split(",") and "pw-Fence-5d1e" not in str(children)
    finally:
        suite.back_online()


def test_fail_unplayed_sees_the_recordings_a_test_owns_in_redis(redis_url):
    owned, other = _recording("owned", tests=("t.py::test_x",)), _recording("someone else's", tests=("t.py::test_y",))
    _fill(redis_url, owned, other)
    store = open_store(redis_url, readonly=True)
    try:
        recorder = Recorder(store, Mode.REPLAY, test_id="t.py::test_x")
        assert recorder.unplayed() == [owned.key]
        recorder.lookup(owned.request, owned.key)
        assert recorder.unplayed() == []
    finally:
        store.close()


def test_commands_that_need_a_file_say_so_without_the_password(capsys):
    code, out, err = _run(capsys, "git-setup", "--cassette", "redis://:pw-Git-91ac@127.0.0.1:1/0?prefix=app")
    assert code == 2 and "git-setup is for a cassette file in the repository, not redis://127.0.0.1:1/0?prefix=app" in err
    assert "pw-Git-91ac" not in out + err
    code, _, err = _run(capsys, "ls", "--cassette", "s3://bucket/cassette")
    assert code == 2 and "unknown kind of store s3://" in err


def test_audit_finds_a_secret_in_a_list_a_sorted_set_and_a_stream_under_the_prefix_and_scrub_keeps_their_types(redis_url, redis_server, tmp_path, capsys, monkeypatch):
    """Another program's keys under the prefix are read whatever their type: a list's items, a sorted set's members, a
    stream's field names and values; scrub rewrites each as the same type (order, scores and entry ids kept)."""
    monkeypatch.chdir(tmp_path)
    planted = {place: "sk-" + "ant-api03-" + hashlib.sha256(place.encode()).hexdigest()[:32] for place in ("list", "zset", "stream field", "stream value")}
    prefix = redis_url.rpartition("prefix=")[2]
    _fill(redis_url, _recording("clean"))
    client = redis_server.client()
    client.rpush(f"{prefix}:queue", "first", planted["list"], "last")
    client.zadd(f"{prefix}:ranked", {"low": 1, planted["zset"]: 2.5})
    client.xadd(f"{prefix}:events", {"note": planted["stream value"]}, id="5-1")
    client.xadd(f"{prefix}:events", {planted["stream field"]: "x"}, id="7-0")

    code, out, _ = _run(capsys, "audit", redis_url)
    assert code == 1 and not [value for value in planted.values() if value in out], out
    audit, paths = audit_for(argparse.Namespace(paths=[redis_url], secret_env=[], secret_pattern=[]))
    assert {place for place, value in planted.items() if value in {finding.value for path in paths for finding in audit.scan_path(path)}} == set(planted)

    code, out, _ = _run(capsys, "scrub", redis_url)
    assert code == 0 and _run(capsys, "audit", redis_url)[0] == 0
    assert client.lrange(f"{prefix}:queue", 0, -1) == [b"first", b"<scrubbed>", b"last"]
    assert client.zrange(f"{prefix}:ranked", 0, -1, withscores=True) == [(b"low", 1.0), (b"<scrubbed>", 2.5)]
    assert client.xrange(f"{prefix}:events") == [(b"5-1", {b"note": b"<scrubbed>"}), (b"7-0", {b"<scrubbed>": b"x"})]


def test_a_prune_keeps_what_a_test_file_this_checkout_lacks_recorded_in_the_shared_redis(llm_pytester, server, env, redis_url, capsys, tmp_path):
    """Another machine's checkout (a branch) has a test file this one lacks; its test's recordings are not this
    checkout's to free: neither ``llm-replay prune`` nor ``pytest --llm-prune`` here may delete them."""
    from test_cli import app_tests

    cassette = f"--llm-cassette={redis_url}"
    env.setenv("OPENAI_API_KEY", server.api_key)
    shared = "def test_both(llm_cache):\n    ask('Feature question')\n"  # a test of both checkouts asks it too, then stops
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France"), test_new=app_tests(server.base_url, "Feature question"))
    llm_pytester.runpytest("--llm-mode=record", cassette, "-o", f"cache_dir={tmp_path / 'the other machine'}").assert_outcomes(passed=2)
    (llm_pytester.path / "test_new.py").rename(tmp_path / "test_new.py")  # this checkout has no test_new.py
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France") + "\n\n" + shared)
    llm_pytester.runpytest("--llm-mode=record", cassette).assert_outcomes(passed=2)
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))  # test_both no longer asks it
    result = llm_pytester.runpytest("--llm-mode=record", "--llm-prune", cassette)
    result.assert_outcomes(passed=1)
    env.chdir(llm_pytester.path)
    assert _run(capsys, "prune", "--cassette", redis_url)[0] == 0
    assert sorted(_contents(redis_url)[0]) == ["(user) Capital of France", "(user) Feature question"], "the other checkout's recording is kept"
