"""The Redis store beyond the contract: URLs and prefixes, passwords that never show, and a server that is not there."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest
from redis_server import RedisServer, free_port, require_redis

from llm_replay import CassetteError, use_cassette
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
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
        assert len(redis_server.client().keys("app_two:*")) == 6  # meta, keys, and two recordings with their owners
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
