"""The Redis store beyond the contract: URLs and prefixes, passwords that never show, and a server that is not there."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from redis_server import RedisServer, free_port, require_redis

from llm_replay import CassetteError, use_cassette
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, OwnerChange, RecordedResponse
from llm_replay.stores.spec import open_store, redacted, resolved

PASSWORD = "pw-Redis-7f3c9a1e"


def _interaction(prompt: str) -> Interaction:
    request = canonicalize("POST", "https://api.test/v1/chat/completions", f'{{"model":"m","messages":[{{"role":"user","content":"{prompt}"}}]}}'.encode())
    return Interaction.of(request, RecordedResponse(200, "OK", {}, b'{"ok": true}'), recorded_at="2026-01-01T00:00:00+00:00", tests=("t.py::test",))


@pytest.fixture
def locked_server(tmp_path):
    """A redis-server that asks for a password."""
    require_redis()
    server = RedisServer(tmp_path / "locked", password=PASSWORD).start()
    yield server
    server.stop()


def test_prefixes_keep_projects_apart_on_one_server(redis_server):
    first, second = open_store(redis_server.url("app_one")), open_store(redis_server.url("app_two"))
    try:
        shared = _interaction("same question in both projects")
        first.put(shared)
        second.put(shared)
        second.put(_interaction("only the second"))
        assert first.delete([shared.key]) == 1
        assert len(first) == 0 and first.get(shared.fingerprint) is None
        assert len(second) == 2 and second.get(shared.fingerprint) is not None, "deleting in one prefix left the other alone"
        assert redis_server.client().keys("app_one:*") == [b"app_one:meta"], "delete left nothing of the recording behind"
        assert len(redis_server.client().keys("app_two:*")) == 7  # meta, keys, two recordings with their owners, what the test owns
    finally:
        first.close()
        second.close()


def test_without_a_prefix_keys_go_under_llm_replay(redis_server):
    store = open_store(f"redis://127.0.0.1:{redis_server.port}/1")
    try:
        store.put(_interaction("default prefix"))
        assert store.describe() == f"redis://127.0.0.1:{redis_server.port}/1"
        db1 = redis_server.client()
        db1.select(1)
        assert db1.sismember("llm_replay:keys", f"{_interaction('default prefix').fingerprint}:0")
    finally:
        store.delete([_interaction("default prefix").key])
        store.close()


def test_the_password_works_and_is_never_shown(locked_server, monkeypatch):
    url = locked_server.url("locked")
    store = open_store(url)
    try:
        store.put(_interaction("behind a password"))
        assert PASSWORD not in store.describe() and store.describe() == f"redis://127.0.0.1:{locked_server.port}/0?prefix=locked"
        assert PASSWORD not in redacted(url) and PASSWORD not in repr(store.hosts)
    finally:
        store.close()
    # A password kept out of ini files and command lines: $VARIABLES in the URL are expanded when opening.
    monkeypatch.setenv("TEAM_REDIS_PASSWORD", PASSWORD)
    from_env = open_store(f"redis://:${{TEAM_REDIS_PASSWORD}}@127.0.0.1:{locked_server.port}/0?prefix=locked")
    try:
        assert len(from_env) == 1 and from_env.describe() == f"redis://127.0.0.1:{locked_server.port}/0?prefix=locked"
    finally:
        from_env.close()


def test_a_wrong_password_is_a_clear_error_without_it(locked_server):
    wrong = "pw-wrong-4d2e8b"
    with pytest.raises(CassetteError) as refused:
        open_store(f"redis://:{wrong}@127.0.0.1:{locked_server.port}/0?prefix=x")
    message = str(refused.value)
    assert wrong not in message and PASSWORD not in message
    assert f"redis://127.0.0.1:{locked_server.port}/0?prefix=x" in message and "password" in message
    with pytest.raises(CassetteError, match="NOAUTH|password|credentials|Authentication"):
        open_store(f"redis://127.0.0.1:{locked_server.port}/0?prefix=x")


def test_an_unreachable_server_is_a_cassette_error_naming_the_url_without_the_password(tmp_path):
    port = free_port()  # nothing listens there
    with pytest.raises(CassetteError) as unreachable:
        with use_cassette(f"redis://:{PASSWORD}@127.0.0.1:{port}/0?prefix=myapp", mode="replay"):
            pass
    message = str(unreachable.value)
    assert f"cannot reach the Redis cassette redis://127.0.0.1:{port}/0?prefix=myapp" in message
    assert PASSWORD not in message and "start the server or fix the URL" in message


def test_a_server_gone_mid_use_is_a_cassette_error(tmp_path):
    require_redis()
    server = RedisServer(tmp_path / "doomed").start()
    store = open_store(server.url("doomed"))
    try:
        store.put(_interaction("before"))
        server.kill()
        with pytest.raises(CassetteError, match=f"cannot reach the Redis cassette redis://127.0.0.1:{server.port}/0"):
            store.get(_interaction("after").fingerprint)
        with pytest.raises(CassetteError, match="cannot reach the Redis cassette"):
            store.put(_interaction("after"))
    finally:
        store.close()
        server.stop()


def test_bad_urls_and_prefixes_say_what_to_write(redis_server):
    with pytest.raises(CassetteError, match=r"prefix 'my app' may hold only letters, digits and _ \. -"):
        open_store(f"redis://127.0.0.1:{redis_server.port}/0?prefix=my app")
    with pytest.raises(CassetteError, match=r"unknown kind of store memcached://; name a file, or use one of redis://, rediss://"):
        open_store("memcached://user:secret@host/0")
    assert "secret" not in redacted("memcached://user:secret@host/0")
    with pytest.raises(CassetteError, match="not a usable Redis URL"):
        open_store("redis://127.0.0.1:notaport/0")
    assert resolved("redis://h:1/0?prefix=a", base=None) == "redis://h:1/0?prefix=a"  # type: ignore[arg-type]


def test_replay_opens_read_only_and_refuses_writes(redis_url):
    store = open_store(redis_url, readonly=True)
    try:
        with pytest.raises(CassetteError, match="open read-only"):
            store.put(_interaction("no"))
        with pytest.raises(CassetteError, match="open read-only"):
            store.put_instant("t.py::test", datetime(2026, 1, 1, tzinfo=timezone.utc))
        assert len(store) == 0
    finally:
        store.close()


def test_a_store_written_by_a_newer_llm_replay_is_refused(redis_server):
    url = redis_server.url("future")
    redis_server.client().hset("future:meta", "schema_version", 99)
    with pytest.raises(CassetteError, match="written by a newer llm_replay .schema 99"):
        open_store(url)


def test_without_redis_py_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # what an environment without the extra looks like
    with pytest.raises(CassetteError, match=r"needs redis-py .*pip install 'redis\[hiredis\]'"):
        open_store("redis://127.0.0.1:1/0?prefix=x")


def test_use_cassette_records_into_redis_and_replays_from_it_offline(redis_url, server):
    import openai

    def ask() -> str:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a script's question"}]).choices[0].message.content

    with use_cassette(redis_url, mode="record") as recorded:
        answer = ask()
    assert recorded.recorded == 1
    server.stop()
    with use_cassette(redis_url, mode="replay") as replayed:
        assert ask() == answer
    assert replayed.replayed == 1 and len(server.requests) == 1


def test_rediss_records_and_replays_over_tls_behind_a_password(tmp_path, server, capsys):
    import openai

    from llm_replay.cli import main

    require_redis()
    tls = RedisServer(tmp_path / "tls", password=PASSWORD, tls=True).start()
    try:
        url = tls.url("secure")
        ask = lambda: openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0).chat.completions.create(  # noqa: E731
            model="gpt-4o-mini", messages=[{"role": "user", "content": "over TLS"}]
        ).choices[0].message.content
        with use_cassette(url, mode="record") as recorded:
            answer = ask()
        assert recorded.recorded == 1 and recorded.cassette.describe() == url.replace(f":{PASSWORD}@", "")
        server.stop()
        with use_cassette(url, mode="replay") as replayed:
            assert ask() == answer and replayed.replayed == 1
        assert main(["ls", "--cassette", url]) == 0 and "over TLS" in capsys.readouterr().out
        with pytest.raises(CassetteError) as plain:  # the TLS port does not speak plain Redis
            open_store(f"redis://:{PASSWORD}@127.0.0.1:{tls.port}/0?prefix=secure&socket_timeout=2")
        assert f"cannot reach the Redis cassette redis://127.0.0.1:{tls.port}/0?prefix=secure" in str(plain.value) and PASSWORD not in str(plain.value)
    finally:
        tls.stop()


def test_without_redis_server_the_redis_tests_fail_unless_a_laptop_asks_to_skip(monkeypatch):
    import redis_server

    monkeypatch.setattr(redis_server, "BINARY", "/nonexistent/redis-server")
    for name in ("CI", "LLM_REPLAY_SKIP_REDIS", redis_server.CI_MARKER, *redis_server._CI_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed .*must run"):
        redis_server.require_redis()  # a laptop that did not ask
    monkeypatch.setenv("LLM_REPLAY_SKIP_REDIS", "1")
    with pytest.raises(pytest.skip.Exception, match="LLM_REPLAY_SKIP_REDIS=1"):
        redis_server.require_redis()
    for ci in (("CI", "true"), (redis_server.CI_MARKER, "1"), ("GITHUB_ACTIONS", "true"), ("JENKINS_URL", "http://jenkins")):
        monkeypatch.setenv(*ci)
        with pytest.raises(pytest.fail.Exception):
            redis_server.require_redis()  # CI fails even when asked to skip
        monkeypatch.delenv(ci[0])


# -- warm: a test's recordings read ahead in one round trip ------------------------------------------


def _answer(prompt: str, body: bytes, test: str) -> Interaction:
    return replace(_interaction(prompt), response=RecordedResponse(200, "OK", {}, body), tests=(test,))


def _commands_run(client) -> int:
    """Commands the server has run, scripts' own calls included, before the INFO that asks (on one held connection)."""
    return client.info("stats")["total_commands_processed"]


def _owned_sets(server, prefix: str) -> dict[str, set[str]]:
    client = server.client()
    return {
        name.decode().removeprefix(f"{prefix}:owned:"): {member.decode() for member in client.smembers(name)}
        for name in client.scan_iter(match=f"{prefix}:owned:*")
    }


def _owners_reversed(store) -> dict[str, set[str]]:
    reversed_: dict[str, set[str]] = {}
    for (fingerprint, occurrence), tests, _ in store.index():
        for test in tests:
            reversed_.setdefault(test, set()).add(f"{fingerprint}:{occurrence}")
    return reversed_


def test_a_warmed_test_asks_the_server_nothing_for_its_clock_and_the_recordings_it_owns(redis_server):
    prefix = "warm"
    writer = open_store(redis_server.url(prefix))
    owned = [_answer(f"q{n}", b'{"n": %d}' % n, "t.py::test_many") for n in range(20)]
    for recording in owned:
        writer.put(recording)
    writer.put_instant("t.py::test_many", datetime(2026, 2, 3, tzinfo=timezone.utc))
    writer.close()
    reader, counter = open_store(redis_server.url(prefix), readonly=True), redis_server.client()
    try:
        before = _commands_run(counter)
        reader.warm(["t.py::test_many"])
        warmed = _commands_run(counter)
        assert warmed - before > 1, "the read-ahead ran on the server"
        answers = [reader.get(recording.fingerprint).response.body for recording in owned]
        clock = reader.stored_clock("t.py::test_many")
        assert _commands_run(counter) - warmed == 1, "after warm, the test's lookups are answered from memory (1: the INFO that counts)"
        assert answers == [b'{"n": %d}' % n for n in range(20)] and clock == (datetime(2026, 2, 3, tzinfo=timezone.utc), None)
        assert reader.get(_interaction("not owned").fingerprint) is None and _commands_run(counter) - warmed > 2, "anything else is asked"
    finally:
        reader.close()


def test_the_owned_sets_follow_every_write_and_a_stale_one_costs_only_a_lookup(redis_server):
    prefix = "follow"
    store = open_store(redis_server.url(prefix))
    try:
        a = replace(_interaction("a"), tests=("t.py::one", "t.py::two"))
        b = replace(_interaction("b"), tests=("t.py::two",))
        store.put(a)
        store.put(b)
        store.put(replace(a, tests=("t.py::three",)))  # overwritten by another test: it owns it too
        store.change_owners({a.key: OwnerChange(removed=("t.py::one", "t.py::two"))})  # a refresh's settling: they no longer do
        store.change_owners({b.key: OwnerChange(added=("t.py::four",), removed=("t.py::two",))})
        assert _owned_sets(redis_server, prefix) == _owners_reversed(store) == {"t.py::three": {"%s:0" % a.fingerprint}, "t.py::four": {"%s:0" % b.fingerprint}}
        store.delete([a.key])
        assert _owned_sets(redis_server, prefix) == _owners_reversed(store) == {"t.py::four": {"%s:0" % b.fingerprint}}
        # A set that names a recording gone, or misses one (written by an older llm_replay): answers stay right.
        redis_server.client().sadd(f"{prefix}:owned:t.py::four", "0" * 32 + ":0")
        redis_server.client().delete(f"{prefix}:owned:t.py::three")
        store.put(replace(_interaction("c"), tests=("t.py::three",)))
        redis_server.client().delete(f"{prefix}:owned:t.py::three")
        for test in ("t.py::four", "t.py::three"):
            store.warm([test])
            assert store.get(b.fingerprint).tests == ("t.py::four",) and store.get(_interaction("c").fingerprint).tests == ("t.py::three",)
            assert store.get("0" * 32) is None
    finally:
        store.close()


def test_warm_reads_ahead_within_the_memory_budget_and_never_a_large_answer(redis_server, monkeypatch):
    from llm_replay.stores import recent

    monkeypatch.setattr(recent, "HIT_CACHE_BYTES", 4096)
    monkeypatch.setattr(recent, "HIT_CACHE_ITEM_BYTES", 2048)
    store = open_store(redis_server.url("budget"))
    try:
        large = _answer("large", b"x" * 4096, "t.py::test")
        small = [_answer(f"s{n}", b"y" * 500, "t.py::test") for n in range(20)]
        for recording in (large, *small):
            store.put(recording)
        store.warm(["t.py::test"])
        ahead = store._ahead  # what memory holds for the test
        assert large.key not in ahead and 0 < sum(len(i.response.body) + len(i.request_json) for i in ahead.values()) <= 4096
        assert store.get(large.fingerprint).response.body == b"x" * 4096 and all(store.get(s.fingerprint) is not None for s in small)
    finally:
        store.close()


def test_a_store_from_before_the_owned_sets_gets_them_at_its_first_writing_open(redis_server):
    prefix = "older"
    store = open_store(redis_server.url(prefix))
    store.put(replace(_interaction("a"), tests=("t.py::one", "t.py::two")))
    store.put(replace(_interaction("b"), tests=("t.py::two",)))
    expected = _owners_reversed(store)
    store.close()
    client = redis_server.client()
    client.delete(*client.keys(f"{prefix}:owned:*"))
    client.hdel(f"{prefix}:meta", "owned_sets")  # what an older llm_replay left
    open_store(redis_server.url(prefix), readonly=True).close()
    assert _owned_sets(redis_server, prefix) == {}, "a read-only open writes nothing"
    open_store(redis_server.url(prefix)).close()
    assert _owned_sets(redis_server, prefix) == expected == {"t.py::one": {f"{_interaction('a').fingerprint}:0"}, "t.py::two": {f"{_interaction('a').fingerprint}:0", f"{_interaction('b').fingerprint}:0"}}


def _scripts_run(client) -> int:
    """Scripts the server ran to the end (a first EVALSHA answered NOSCRIPT, then loaded and run, counts once)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return stats.get("calls", 0) - stats.get("failed_calls", 0) - stats.get("rejected_calls", 0)


def test_read_ahead_warms_a_window_once_and_a_test_outside_the_order_alone(redis_server):
    from llm_replay.engine.read_ahead import WINDOW, ReadAhead

    prefix, order = "window", [f"t.py::test[{n}]" for n in range(WINDOW + 8)]
    store = open_store(redis_server.url(prefix))
    for n, test in enumerate(order):
        store.put(_answer(f"q{n}", b'{"n": %d}' % n, test))
    counter = redis_server.client()
    counter.config_resetstat()
    ahead = ReadAhead(order)
    try:
        for test in order[:WINDOW]:
            ahead.before(store, test)
        assert _scripts_run(counter) == 1, "the first window is one script"
        assert all(store.get(_interaction(f"q{n}").fingerprint).tests == (order[n],) for n in range(WINDOW))
        assert _scripts_run(counter) == 1, "and its tests' lookups ask nothing more"
        ahead.before(store, "t.py::test_asked_for_llm_cache_by_name")  # not in the collected order: warmed alone
        ahead.before(store, order[WINDOW])  # the next window starts where the order continues
        assert _scripts_run(counter) == 3
        assert store.get(_interaction(f"q{WINDOW}").fingerprint).response.body == b'{"n": %d}' % WINDOW
        assert _scripts_run(counter) == 3
    finally:
        store.close()


@pytest.mark.parametrize(
    ("plant", "error"),
    [
        (lambda client, p: client.hset(f"{p}:meta", "schema_version", "two"), r"key {p}:meta cannot be read \(field schema_version is not a number: 'two'"),
        (lambda client, p: client.sadd(f"{p}:keys", "not-a-key"), r"key {p}:keys cannot be read \(a member is 'not-a-key', not fingerprint:occurrence\); remove it: redis-cli SREM"),
        (lambda client, p: client.hset(f"{p}:instants", "t.py::test", "yesterday"), r"key {p}:instants cannot be read \(the instant of 't.py::test' is 'yesterday'"),
        (lambda client, p: client.set(f"{p}:instants", "x"), r"key {p}:instants is a string, where llm_replay keeps a hash; another program wrote it"),
    ],
    ids=["schema", "member", "instant", "type"],
)
def test_a_value_llm_replay_never_writes_is_an_error_naming_its_key_and_is_kept(redis_server, plant, error):
    prefix = "planted" + str(free_port())
    store = open_store(redis_server.url(prefix))
    store.put(_interaction("kept"))
    store.close()
    client = redis_server.client()
    plant(client, prefix)
    before = {name: client.dump(name) for name in client.scan_iter(match=f"{prefix}:*")}

    def everything() -> None:
        store = open_store(redis_server.url(prefix))
        try:
            list(store.interactions()), store.instants(), store.stored_clock("t.py::test")
        finally:
            store.close()

    with pytest.raises(CassetteError, match=error.format(p=prefix) + ".*llm_replay changed nothing"):
        everything()
    assert {name: client.dump(name) for name in client.scan_iter(match=f"{prefix}:*")} == before


def test_a_database_the_server_lacks_says_to_name_another(redis_server):
    with pytest.raises(CassetteError, match=r"DB index is out of range; the server has fewer databases .*name another in the URL's path"):
        open_store(f"redis://127.0.0.1:{redis_server.port}/99?prefix=x")
