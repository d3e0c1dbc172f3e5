"""No secret in any cassette: the Scrubber alone, at the cassette's put, and in whole record/refresh/replay sessions."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
from urllib.parse import quote

import openai
import pytest
from conftest import cassette_file, printed, write_ini

import llm_replay

from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.memory import InMemoryCache
from llm_replay.stores.sqlite import SQLiteCache

KEY = "sk-" + "proj-Zq3XvB8nLw2Rt6Yp1Ks9Hd4Fg7Jm0Cx5Vb2Nq8Wr"  # fake, split so secret scanners see no key
ENVIRON = {"OPENAI_API_KEY": KEY, "TELEGRAM_BOT_TOKEN": "123456:AAFxyzSecretBot", "HOME": "/home/someone-long", "SHORT_KEY": "abc"}


def _interaction(url: str, body: bytes, response_headers: dict[str, list[str]], response_body: bytes) -> Interaction:
    request = canonicalize("POST", url, body, "application/json")
    return Interaction.of(request, RecordedResponse(200, "OK", response_headers, response_body))


def test_scrubber_replaces_secret_values_everywhere_and_drops_credential_headers():
    scrubber = Scrubber(environ=ENVIRON)
    original = _interaction(
        f"https://api.telegram.org/bot123456:AAFxyzSecretBot/send?key={KEY}&chat=1",
        f'{{"text": "my key is {KEY}", "home": "/home/someone-long", "short": "abc"}}'.encode(),
        {"Set-Cookie": ["session=1"], "openai-organization": ["org-1"], "x-echo": [f"Bearer {KEY}"], "content-type": ["application/json"]},
        b'\xff\x00binary ' + KEY.encode(),
    )
    stored = scrubber.interaction(original)

    request = stored.request
    assert request.path == "/bot<scrubbed:TELEGRAM_BOT_TOKEN>/send"
    assert request.query == (("chat", "1"),), "the key= query parameter is dropped"
    assert request.body == {"text": "my key is <scrubbed:OPENAI_API_KEY>", "home": "/home/someone-long", "short": "abc"}
    assert stored.fingerprint == original.fingerprint != request.fingerprint, "the key is the one it was given (the Recorder's)"
    assert stored.response.headers == {"x-echo": ["Bearer <scrubbed:OPENAI_API_KEY>"], "content-type": ["application/json"]}
    assert stored.response.body == b"\xff\x00binary <scrubbed:OPENAI_API_KEY>"
    assert scrubber.interaction(stored) == stored, "scrubbing twice changes nothing"


def test_user_names_and_patterns_add_to_the_built_in_rules():
    environ = {"DATABASE_DSN": "postgres://admin:hunter22@db/app", "PLAIN_SETTING": "not-a-secret-value"}
    scrubber = Scrubber(env_names=("*_DSN",), patterns=(r"corp-[0-9a-f]{16}",), environ=environ)
    assert scrubber.text("dsn postgres://admin:hunter22@db/app id corp-0123456789abcdef, not-a-secret-value") == (
        "dsn <scrubbed:DATABASE_DSN> id <scrubbed>, not-a-secret-value"
    )
    with pytest.raises(ValueError, match=r"secret pattern '\(unclosed' is not a valid regular expression .*llm_secret_patterns"):
        Scrubber(patterns=("(unclosed",))


@pytest.mark.parametrize("make_cassette", [lambda tmp_path, s: SQLiteCache(tmp_path / "c.sqlite3", scrubber=s), lambda tmp_path, s: InMemoryCache(s)])
def test_every_put_scrubs_so_no_write_path_can_bypass_it(tmp_path, make_cassette):
    """Import, merge and export store with ``put`` too: hand it an unscrubbed interaction, as they would."""
    cassette = make_cassette(tmp_path, Scrubber(environ=ENVIRON))
    cassette.put(_interaction(f"https://api.example.com/v1/x?api_key={KEY}", f'{{"k": "{KEY}"}}'.encode(), {"set-cookie": ["a=b"]}, KEY.encode()))
    (stored,) = list(cassette.interactions())
    assert KEY not in stored.request_json and KEY.encode() not in stored.response.body and "set-cookie" not in stored.response.headers
    assert cassette.get(stored.fingerprint) == stored
    cassette.close()
    if cassette.path:
        assert KEY.encode() not in cassette.path.read_bytes()


SECRET_APP = '''
import os
import httpx
import openai
import pytest

BASE_URL = "{base_url}"


def client(key_variable="OPENAI_API_KEY"):
    return openai.OpenAI(base_url=BASE_URL, api_key=os.environ[key_variable], default_query={{"key": os.environ["GOOGLE_API_KEY"]}}, max_retries=0)


def test_chat(llm_cache):
    prompt = f"token {{os.environ['MY_SERVICE_TOKEN']}}, creds {{os.environ['INTERNAL_CREDS']}}, id corp-0123456789abcdef"
    answer = client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
    print("ANSWER", answer.choices[0].message.content)


def test_wrong_key_is_echoed_by_the_server(llm_cache):
    with pytest.raises(openai.AuthenticationError) as raised:
        client("OTHER_API_KEY").chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
    print("ERROR", raised.value.message)
'''
SECRETS = {
    "GOOGLE_API_KEY": "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
    "MY_SERVICE_TOKEN": "tok_live_8f7e6d5c4b3a2910",
    "INTERNAL_CREDS": "internal-creds-5566778899",
    "OTHER_API_KEY": "sk-" + "proj-Other0Key1That2The3Server4Rejects5",
}


def test_record_refresh_and_replay_sessions_store_no_secret(llm_pytester, server, env):
    write_ini(llm_pytester, "llm_secret_env = INTERNAL_CREDS\nllm_secret_patterns = corp-[0-9a-f]{16}\n")
    llm_pytester.makepyfile(test_app=SECRET_APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    for name, value in SECRETS.items():
        env.setenv(name, value)
    cassette = cassette_file(llm_pytester)

    for mode in ("record", "refresh"):
        result = llm_pytester.runpytest("-s", f"--llm-mode={mode}")
        result.assert_outcomes(passed=2)
        assert server.requests[-2]["query"] == f"key={SECRETS['GOOGLE_API_KEY']}", "the live request carried the key"
        assert f"Incorrect API key provided: {SECRETS['OTHER_API_KEY']}" in result.stdout.str(), "the live answer echoed it"
        stored = cassette.read_bytes()
        leaked = [name for name, value in {**SECRETS, "OPENAI_API_KEY": server.api_key}.items() if value.encode() in stored]
        assert leaked == [], f"{mode} stored the values of {leaked}"
        for word in (b"corp-0123456789abcdef", b"set-cookie", b"org-fake-account", b"proj_fake_project"):
            assert word not in stored
        for placeholder in (b"<scrubbed:MY_SERVICE_TOKEN>", b"<scrubbed:INTERNAL_CREDS>", b"<scrubbed>", b"<scrubbed:OTHER_API_KEY>"):
            assert placeholder in stored
    assert main(["audit", str(cassette)]) == 0

    # CI holds other values of the same secrets: the placeholders still match, and replay is offline.
    server.stop()
    env.setenv("CI", "true")
    env.delenv("OPENAI_API_KEY")
    for name, value in SECRETS.items():
        env.setenv(name, value[::-1])
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=2)
    replayed.stdout.fnmatch_lines(["*ERROR *Incorrect API key provided: <scrubbed:OTHER_API_KEY>.*", "llm_replay: 2 replayed, 0 recorded, 0 missed*"])
    with sqlite3.connect(cassette) as db:
        assert db.execute("SELECT count(*) FROM interactions").fetchone() == (2,)


SECRET_IN_PROMPT = '''
import os
import openai
import pytest
from langchain_openai import ChatOpenAI

BASE_URL = "{base_url}"


def prompt():
    return f"summarise the ticket from account {{os.environ['SUPPORT_DESK_TOKEN']}}"


@pytest.mark.llm_cache(layer="langchain")
def test_langchain_layer(llm_cache):
    print("ANSWER", ChatOpenAI(base_url=BASE_URL, model="gpt-4o-mini", max_retries=0).invoke(prompt()).content)


@pytest.mark.llm_cache(match_ignore=["user"])
def test_http_with_match_ignore(llm_cache):
    client = openai.OpenAI(base_url=BASE_URL, max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", user="u-1", messages=[{{"role": "user", "content": prompt()}}])
    print("ANSWER", answer.choices[0].message.content)
'''


def test_a_secret_in_the_prompt_replays_under_the_key_it_was_recorded_with(llm_pytester, server, env):
    """Every layer keys the scrubbed request, so the recording is found, and found whatever value CI holds."""
    llm_pytester.makepyfile(test_secret_prompt=SECRET_IN_PROMPT.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("SUPPORT_DESK_TOKEN", "desk-token-1234567890")
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record", "-p", "no:randomly")
    recorded.assert_outcomes(passed=2)
    assert b"desk-token-1234567890" not in cassette_file(llm_pytester).read_bytes()

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    answers = []
    for value in ("desk-token-1234567890", "another-desk-token-0987"):
        env.setenv("SUPPORT_DESK_TOKEN", value)
        replayed = llm_pytester.runpytest("-s", "-p", "no:randomly")
        replayed.assert_outcomes(passed=2)
        replayed.stdout.fnmatch_lines(["llm_replay: 2 replayed, 0 recorded, 0 missed*"])
        answers.append([line.split("ANSWER ", 1)[1] for line in replayed.outlines if "ANSWER " in line])
    assert answers[0] == answers[1] and len(answers[0]) == 2
    assert all("account <scrubbed:SUPPORT_DESK_TOKEN> #" in answer for answer in answers[0]), "the echoed secret was scrubbed too"


def test_langchains_own_cache_finds_an_entry_whose_prompt_holds_a_secret(env):
    from langchain_core.outputs import Generation

    from llm_replay.langchain import InMemoryCache as LangChainCache

    env.setenv("SUPPORT_DESK_TOKEN", "desk-token-1234567890")
    cache = LangChainCache()
    cache.update("ticket from desk-token-1234567890", "llm", [Generation(text="done")])
    assert "desk-token-1234567890" not in next(cache.cassette.interactions()).request_json
    assert cache.lookup("ticket from desk-token-1234567890", "llm") == [Generation(text="done")]


def test_request_scrubbing_sees_escaped_values_and_patterns_across_newlines_and_leaves_clean_requests_alone():
    scrubber = Scrubber(patterns=(r"-----BEGIN KEY-----\n\w+",), environ={"DB_PASSWORD": 'pa"ss\\word-1234'})
    dirty = canonicalize("POST", "https://api.test/v1/x", json.dumps({"a": 'login pa"ss\\word-1234', "b": "-----BEGIN KEY-----\nMIIEabc"}).encode(), "application/json")
    assert scrubber.request(dirty).body == {"a": "login <scrubbed:DB_PASSWORD>", "b": "<scrubbed>"}
    clean = canonicalize("POST", "https://api.test/v1/x", b'{"a": "nothing to hide\\nhere"}', "application/json")
    assert scrubber.request(clean) is clean


def test_credentials_named_as_such_are_scrubbed_where_no_environment_variable_knows_them():
    """OAuth, AWS presigning, login forms, URL passwords: the values are nobody's env var, the names say it all."""
    secret = "s3cr3t-Value-9"
    scrubber = Scrubber(environ={})
    query = "&".join(f"{name}={secret}{index}" for index, name in enumerate(
        ["access_token", "access-token", "client_secret", "password", "auth", "X-Amz-Credential", "X-Amz-Security-Token", "X-Amz-Signature"]))
    json_request = canonicalize("POST", f"https://bob:{secret}@idp.example.com/token?{query}&page=2",
                                json.dumps({"grant_type": "refresh_token", "refresh_token": secret, "nested": [{"Client-Secret": secret}]}), "application/json")
    form_request = canonicalize("POST", "https://idp.example.com/token", f"client_id=app&client_secret={secret}&password={secret}", "application/x-www-form-urlencoded")
    multipart_request = canonicalize("POST", "https://idp.example.com/upload",
                                     f'--b\r\nContent-Disposition: form-data; name="client_secret"\r\n\r\n{secret}\r\n--b--\r\n', "multipart/form-data; boundary=b")
    answer = {"access_token": "ya29." + secret, "refresh_token": "1//" + secret, "id_token": "eyJ" + secret, "token_type": "Bearer", "expires_in": 3599}
    headers = {
        "x-amz-security-token": [secret], "X-Upstream-Token": [secret], "x-client-secret": [secret],
        "x-upstream-authorization": [f"Bearer {secret}"], "X-Forwarded-Authorization": [secret], "set-cookie2": [f"sid={secret}"],
        "location": [f"https://bob:{secret}@idp.example.com/next"], "x-ratelimit-remaining-tokens": ["99"], "content-type": ["application/json"],
    }
    stored = [
        scrubber.interaction(Interaction.of(json_request, RecordedResponse(200, "OK", headers, json.dumps(answer).encode()))),
        scrubber.interaction(Interaction.of(form_request, RecordedResponse(200, "OK", {"content-type": ["application/x-www-form-urlencoded"]},
                                                                           f"access_token={secret}&scope=read".encode()))),
        scrubber.interaction(Interaction.of(multipart_request, RecordedResponse(200, "OK", {}, f'data: {{"id_token": "{secret}"}}\n\n'.encode()))),
    ]
    for interaction in stored:
        assert secret not in interaction.request_json and secret.encode() not in interaction.response.body
        assert secret not in json.dumps(interaction.response.headers)
        assert scrubber.interaction(interaction) == interaction, "scrubbing twice changes nothing"
    first = stored[0]
    assert first.request.query == (("page", "2"),) and first.request.host == "https://bob:<scrubbed>@idp.example.com"
    assert first.request.body == {"grant_type": "refresh_token", "refresh_token": "<scrubbed>", "nested": [{"Client-Secret": "<scrubbed>"}]}
    assert json.loads(first.response.body) == {**answer, "access_token": "<scrubbed>", "refresh_token": "<scrubbed>", "id_token": "<scrubbed>"}
    assert sorted(first.response.headers) == ["content-type", "location", "x-ratelimit-remaining-tokens"], "counted tokens are no token"
    assert stored[1].request.body == "client_id=app&client_secret=<scrubbed>&password=<scrubbed>"
    assert stored[1].response.body == b"access_token=<scrubbed>&scope=read"


def test_a_form_with_an_empty_field_is_still_a_form_whose_secret_fields_are_scrubbed():
    """The blank line of an empty part once broke the form's parsing: the whole body was kept as text, secrets and all."""
    secret = "cs-QrbkeRZ8HSE27kAnwT8vpvelBy9O2A"
    body = (
        f'--b\r\nContent-Disposition: form-data; name="client_secret"\r\n\r\n{secret}\r\n'
        '--b\r\nContent-Disposition: form-data; name="note"\r\n\r\n\r\n'
        f'--b\r\nContent-Disposition: form-data; name="file"; filename="config.txt"\r\nContent-Type: text/plain\r\n\r\nKEY={KEY}\n\r\n--b--\r\n'
    )
    request = canonicalize("POST", "https://idp.example.com/upload", body, "multipart/form-data; boundary=b")
    assert request.body_kind == "multipart"
    assert [part["name"] for part in request.body] == ["client_secret", "note", "file"] and request.body[1]["value"] == ""
    stored = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, b"{}")))
    assert secret not in stored.request_json and KEY not in stored.request_json, "the file's content is kept as its size and digest"


def test_secrets_inside_base64_request_bodies_are_scrubbed_from_the_bytes_they_stand_for():
    """A body that is not UTF-8 (and a form field that is not) is stored as base64, where no text search sees a key."""
    scrubber = Scrubber(patterns=(r"corp-[0-9a-f]{16}",), environ={"MY_SERVICE_TOKEN": KEY})
    raw = canonicalize("POST", "https://api.test/v1/upload", b"\x89PNG\xff" + KEY.encode() + b" corp-0fff60411def00b0\x00", "application/octet-stream")
    form = canonicalize("POST", "https://api.test/v1/files", b'--b\r\nContent-Disposition: form-data; name="meta"\r\n\r\n\xff\xfe' + KEY.encode() + b"\r\n--b--\r\n",
                        "multipart/form-data; boundary=b")
    assert raw.body_kind == "bytes" and "base64" in form.body[0]
    stored_raw, stored_form = (scrubber.interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, b"{}"))) for request in (raw, form))
    assert base64.b64decode(stored_raw.request.body) == b"\x89PNG\xff<scrubbed:MY_SERVICE_TOKEN> <scrubbed>\x00"
    assert base64.b64decode(stored_form.request.body[0]["base64"]) == b"\xff\xfe<scrubbed:MY_SERVICE_TOKEN>"
    assert scrubber.interaction(stored_raw) == stored_raw, "scrubbing twice changes nothing"
    clean = canonicalize("POST", "https://api.test/v1/upload", b"\x89PNG\xff nothing here", "application/octet-stream")
    assert scrubber.request(clean) is clean


def test_a_url_password_in_a_prompt_is_scrubbed_as_in_the_host():
    """A connection string pasted into a prompt or a field is nobody's environment variable: its form says it all."""
    body = json.dumps({"messages": [{"role": "user", "content": "why does postgres://admin:Hunter2-db-pw@db.internal/app fail?"}], "dsn": "redis://:s3cret-Redis@cache:6379"})
    request = canonicalize("POST", "https://api.test/v1/chat", body, "application/json")
    stored = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, b"{}")))
    assert "Hunter2-db-pw" not in stored.request_json and "s3cret-Redis" not in stored.request_json
    assert stored.request.body["messages"][0]["content"] == "why does postgres://admin:<scrubbed>@db.internal/app fail?"
    assert stored.request.body["dsn"] == "redis://:<scrubbed>@cache:6379"
    plain = canonicalize("POST", "https://api.test/v1/chat", json.dumps({"content": "mail me at a@b.example, see https://example.com/x"}), "application/json")
    assert Scrubber(environ={}).request(plain) is plain


def test_a_secret_value_is_found_percent_encoded_in_a_url_and_with_json_escaped_slashes():
    secret = "3nD5bMqcYfKAag8AA3BcBhClidvXO3+/0gcAQjPO="
    scrubber = Scrubber(environ={"ACME_SECRET": secret})
    request = canonicalize("GET", f"https://api.test/v1/keys/{quote(secret, safe='')}/usage?k={quote(secret)}", b"", "")
    echoed = json.dumps({"error": f"bad secret {secret}"}).replace("/", "\\/").encode()  # as PHP's and Go's encoders write it
    stored = scrubber.interaction(Interaction.of(request, RecordedResponse(400, "Bad Request", {}, echoed)))
    assert stored.request.path == "/v1/keys/<scrubbed:ACME_SECRET>/usage" and stored.request.query == (("k", "<scrubbed:ACME_SECRET>"),)
    assert stored.response.body == b'{"error": "bad secret <scrubbed:ACME_SECRET>"}'


def _go_json(data: object) -> str:
    """Go's encoding/json: UTF-8 as it is, <, > and & escaped."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _dotnet_json(data: object) -> str:
    """.NET's System.Text.Json: all but ASCII and the HTML-sensitive characters escaped, in upper-case hex."""
    text = json.dumps(data)
    for char in "<>&'+`":
        text = text.replace(char, f"\\u{ord(char):04X}")
    return re.sub(r"\\u[0-9a-f]{4}", lambda match: "\\u" + match.group(0)[2:].upper(), text)


@pytest.mark.parametrize("encoder", [json.dumps, _go_json, _dotnet_json], ids=["python", "go", "dotnet"])
def test_a_secret_value_is_found_as_json_encoders_escape_it(encoder):
    """A password with a non-ASCII letter or <, >, & reads differently in an answer's JSON text than in the
    environment: the scrub looked for it as the environment holds it only, and audit and a replay missed it too."""
    secrets = {"DB_PASSWORD": "Passwört-Geheim-2024", "SMTP_PASSWORD": "R3d&Blue<Gr33n>2024"}
    scrubber = Scrubber(environ=secrets)
    echoed = encoder({"error": f"login failed for {secrets['DB_PASSWORD']} and {secrets['SMTP_PASSWORD']}"}).encode()
    request = canonicalize("POST", "https://api.test/v1/chat", b'{"q": 1}', "application/json")
    stored = scrubber.interaction(Interaction.of(request, RecordedResponse(400, "Bad Request", {}, echoed)))
    assert stored.response.json() == {"error": "login failed for <scrubbed:DB_PASSWORD> and <scrubbed:SMTP_PASSWORD>"}


def test_audit_and_scrub_find_an_escaped_secret_value_in_an_older_cassette(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMTP_PASSWORD", "R3d&Blue<Gr33n>2024")
    monkeypatch.setenv("DB_PASSWORD", "Passwört-Geheim-2024")
    path = tmp_path / "old.sqlite3"
    old = SQLiteCache(path, scrubber=Scrubber(environ={}))  # written before the scrub knew escaped forms
    for echoed in (_go_json({"echo": "R3d&Blue<Gr33n>2024"}), json.dumps({"echo": "Passwört-Geheim-2024"})):
        old.put(Interaction.of(canonicalize("POST", "https://api.test/v1/chat", echoed, "application/json"), RecordedResponse(200, "OK", {}, echoed.encode())))
    old.close()
    out = (main(["audit", str(path)]), capsys.readouterr().out)
    assert out[0] == 1 and "value of environment variable $SMTP_PASSWORD" in out[1] and "value of environment variable $DB_PASSWORD" in out[1]
    assert main(["scrub", str(path)]) == 0 and b"Gr33n" not in path.read_bytes() and b"Geheim" not in path.read_bytes()
    assert main(["audit", str(path)]) == 0


def test_a_non_ascii_secret_echoed_by_a_real_sdk_answer_is_not_stored(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "Passwört-Geheim-2024")  # the fake answers with Python's json.dumps: "Passw\u00f6rt"
    cassette = tmp_path / "c.sqlite3"
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    with llm_replay.use_cassette(cassette, mode="record"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "my password is Passwört-Geheim-2024"}])
    stored = cassette.read_bytes()
    assert b"Passw\\u00f6rt-Geheim" not in stored and "Passwört-Geheim".encode() not in stored and b"<scrubbed:DB_PASSWORD>" in stored


PARAMETRIZED_SECRET = '''
import os
import openai
import pytest

SECRET = os.environ["TENANT_TOKEN"]


@pytest.mark.parametrize("tenant", [SECRET])
def test_per_tenant(llm_cache, tenant):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hello tenant"}}])
    print("COUNTS", llm_cache.replayed, llm_cache.recorded, "stored clock found:", llm_cache.frozen_at is not None or llm_cache.clock_unread)
'''


def test_a_secret_in_a_parametrize_id_is_in_no_byte_written_and_the_test_still_replays(llm_pytester, server, env, capsys):
    secret = "tenant-7f3a9c2e5b1d"
    env.setenv("TENANT_TOKEN", secret)
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_tenants=PARAMETRIZED_SECRET.format(base_url=server.base_url))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record", "-p", "no:cacheprovider")  # pytest's own cache keeps test ids
    recorded.assert_outcomes(passed=1)
    assert main(["textconv", str(cassette_file(llm_pytester))]) == 0
    shown = capsys.readouterr().out
    assert "test_per_tenant[<scrubbed:TENANT_TOKEN>]" in shown and secret not in shown, "git diff shows no secret"
    written = [path for path in llm_pytester.path.rglob("*") if path.is_file()]
    assert [path.name for path in written if secret.encode() in path.read_bytes()] == []

    server.stop()
    env.setenv("CI", "true")
    env.delenv("OPENAI_API_KEY")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    # the replay finds the test's stored clock under its scrubbed id (else it would neither freeze nor know it need not)
    assert printed(recorded, "COUNTS") + printed(replayed, "COUNTS") == ["0 1 stored clock found: True", "1 0 stored clock found: True"]


LONG_TOKEN_SCRUB = """
import sys
from llm_replay.model.scrub import Scrubber
from llm_replay.model.interaction import RecordedResponse
body = b'{"data": "' + b"0f" * 2_000_000 + b'", "url": "https://' + b"a" * 1_000_000 + b'", "k": "' + b"x-" * 1_000_000 + b'"}'
scrubbed = Scrubber(environ={}).response(RecordedResponse(200, "OK", {"content-type": ["application/json"]}, body))
sys.stdout.write("unchanged" if scrubbed.body == body else "changed")
"""


def test_an_answer_made_of_long_unbroken_tokens_is_scrubbed_in_one_pass():
    """Hex, base64 or a long URL in an answer: the name rules must not backtrack over the token (a quadratic
    scan took 2 s for 20 KB and never finished a 50 MB answer). Run apart, so a regression fails, not hangs."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LONG_TOKEN_SCRUB], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "unchanged", "nothing in it is a secret"


def test_the_environment_is_read_afresh_as_variables_come_go_and_change_between_remembered_sets():
    """The secret names are remembered per set of variables (pytest adds and removes PYTEST_CURRENT_TEST around every
    test); a value that changes, a secret that appears in a set seen before, or one that goes, is still caught."""
    environ = {"HOME": "/home/someone", "SERVICE_TOKEN": "first-token-value-123"}
    scrubber = Scrubber(environ=environ)
    for phase in range(3):
        environ["PYTEST_CURRENT_TEST"] = f"test_x (phase {phase})"
        assert scrubber.text("first-token-value-123") == "<scrubbed:SERVICE_TOKEN>"
        del environ["PYTEST_CURRENT_TEST"]
        assert scrubber.text("first-token-value-123") == "<scrubbed:SERVICE_TOKEN>"
    environ["SERVICE_TOKEN"] = "second-token-value-456"  # same names, new value
    assert scrubber.text("first-token-value-123 second-token-value-456") == "first-token-value-123 <scrubbed:SERVICE_TOKEN>"
    environ["PYTEST_CURRENT_TEST"] = "test_y (call)"  # a remembered set of names, with the new value
    assert scrubber.text("second-token-value-456") == "<scrubbed:SERVICE_TOKEN>"
    environ["OTHER_SECRET"] = "other-secret-value-789"
    assert scrubber.text("other-secret-value-789") == "<scrubbed:OTHER_SECRET>"
    del environ["SERVICE_TOKEN"]
    assert scrubber.text("second-token-value-456") == "second-token-value-456"


def test_a_test_id_scrubbed_before_its_secret_was_set_is_scrubbed_again_after():
    """Scrubbed test ids are remembered while the secrets stay the same: a secret that appears later (a value set
    in the middle of a session, under a name seen before or a new one) is out of the id the next time it is asked."""
    environ = {"HOME": "/home/someone", "SERVICE_TOKEN": "old-token-value-123"}
    scrubber = Scrubber(environ=environ)
    test_id = "t.py::test_tenant[tenant-secret-4f2a9c]"
    assert scrubber.test_id(test_id) == test_id
    environ["SERVICE_TOKEN"] = "tenant-secret-4f2a9c"  # a name seen before, a new value
    assert scrubber.test_id(test_id) == "t.py::test_tenant[<scrubbed:SERVICE_TOKEN>]"
    del environ["SERVICE_TOKEN"]
    assert scrubber.test_id(test_id) == test_id
    environ["TENANT_KEY"] = "tenant-secret-4f2a9c"  # a new name
    assert scrubber.test_id(test_id) == "t.py::test_tenant[<scrubbed:TENANT_KEY>]"
    del environ["TENANT_KEY"]
    assert scrubber.test_ids([test_id, "t.py::test_plain"]) == [test_id, "t.py::test_plain"]  # many at once, read afresh too
    environ["TENANT_KEY"] = "tenant-secret-4f2a9c"
    assert scrubber.test_ids([test_id, "t.py::test_plain"]) == ["t.py::test_tenant[<scrubbed:TENANT_KEY>]", "t.py::test_plain"]


def test_a_scrubber_reads_the_environment_as_it_is_when_built(monkeypatch):
    # A test framework may swap os.environ for another mapping: a Scrubber built afterwards reads that one.
    monkeypatch.setattr(os, "environ", {"SOME_API_KEY": "sk-planted-0123456789"})
    assert Scrubber().text("key sk-planted-0123456789 here") == "key <scrubbed:SOME_API_KEY> here"
