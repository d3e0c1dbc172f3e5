"""Secrets the rules by name and by URL did not catch: camelCase credential names (``accessToken``, ``clientSecret``) in
requests and answers, a signed URL's credentials in a request body and split over a stream's events, JSON nested two
strings deep; and ``llm-replay scrub`` keeping an XML body well-formed. The real openai SDK against the loopback fake;
an older cassette made by putting the secret back where the scrub replaced it and keying it as it was keyed then."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest
from test_embedded_json_secrets import PASSWORD, _chat, _told
from test_unusual_secret_places import ANTHROPIC_KEY

import llm_replay
from llm_replay.cli import main
from llm_replay.engine.matching import MatchRules, RekeyIndex
from llm_replay.model.fingerprint import CanonicalRequest, canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.sqlite import SQLiteCache

CAMEL_NAMES = ["accessToken", "refreshToken", "idToken", "clientSecret", "privateKey", "sessionToken", "secretAccessKey", "clientAssertion"]
SECRET = "Zq8" + "vT3nLp7Wx2Rk9Bd4Hs6"  # no variable holds it, no key shape: a secret only by where it stands


def _ask(fake: Any, content: Any = "hi", tool_result: str | None = None, **extra: Any) -> str:
    """One chat call; with ``tool_result``, the app sends a tool's answer back (a JSON body it got from elsewhere)."""
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": content}]
    if tool_result is not None:
        messages += [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "login", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": tool_result}]
    return client.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_body=extra or None).choices[0].message.content


def _as_an_older_version_stored_it(cassette: Path, secret: str, scrubbed: str = "<scrubbed>") -> None:
    """``secret`` put back where the scrub wrote ``scrubbed``, and each recording keyed by its request as stored then."""
    with sqlite3.connect(cassette) as db:
        rows = db.execute("SELECT fingerprint, occurrence, request, body FROM interactions").fetchall()
        for fingerprint, occurrence, request, body in rows:
            request = request.replace(scrubbed, secret)
            body = body.replace(scrubbed.encode(), secret.encode()) if isinstance(body, bytes) else body.replace(scrubbed, secret)
            db.execute("UPDATE interactions SET fingerprint = ?, request = ?, body = ? WHERE fingerprint = ? AND occurrence = ?",
                       (CanonicalRequest.from_json(request).fingerprint, request, body, fingerprint, occurrence))
    assert secret.encode() in cassette.read_bytes()


def _audited(cassette: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    return capsys.readouterr().out


# 1. camelCase credential names


def test_camel_case_credential_names_in_a_request_body_are_stored_scrubbed_and_any_value_replays(server, tmp_path):
    """In a tool's result the app sends back (JSON text in a string) and in the JSON body itself."""
    def fields(value: str) -> dict[str, str]:
        return {name: f"{value}-{name}" for name in CAMEL_NAMES}

    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, tool_result=json.dumps(fields(SECRET)), auth=fields(SECRET))
    assert SECRET.encode() in server.requests[-1]["body"], "the live request carried them"
    assert SECRET.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        answer = _ask(server, tool_result=json.dumps(fields("another-value-in-ci")), auth=fields("another-value-in-ci"))
    assert replaying.replayed == 1
    assert answer == re.sub(r'": "[^"]*"', '": "<scrubbed>"', live), "the echo of the tool result in the answer is scrubbed too"


@pytest.mark.parametrize(("name", "pieces"), [("accessToken", None), ("ClientSecret", 3)], ids=["whole", "streamed 3 characters an event"])
def test_a_camel_case_credential_in_a_tool_call_the_model_answers_is_stored_scrubbed(name, pieces, server, tmp_path):
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert _chat(server, _told(name, pieces), stream=pieces is not None) != "<scrubbed>"
    assert b"horse-battery-staple" not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert _chat(server, _told(name, pieces), stream=pieces is not None) == "<scrubbed>"


def test_a_camel_case_credential_in_an_older_cassette_fails_the_audit_and_still_replays(server, tmp_path, capsys):
    """Recorded before the name counted: the secret in the stored request's JSON body, and the recording keyed with it.
    The audit finds it by its field's name (it has no key's shape); the lookup is keyed scrubbed now, and the recording
    is found again under its old key, also after ``llm-replay scrub`` removed the secret."""
    cassette = tmp_path / "c.sqlite3"
    sent = {"clientSecret": SECRET, "expiresIn": 3599}
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, auth=sent)
    _as_an_older_version_stored_it(cassette, SECRET)
    assert "column request (JSON, keys included): value of a secret-named field 'Zq8vT…Hs6'" in _audited(cassette, capsys)
    server.stop()
    for scrubbed in (False, True):
        if scrubbed:
            assert main(["scrub", str(cassette)]) == 0 and SECRET.encode() not in cassette.read_bytes()
        with llm_replay.use_cassette(cassette, mode="replay") as replaying:
            assert _ask(server, auth=sent) == live
        assert replaying.replayed == 1


def test_a_camel_case_credential_in_a_query_parameter_is_not_stored_and_any_value_replays(server, tmp_path):
    def ask(value: str) -> str:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, default_query={"accessToken": value, "api-version": "1"})
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content

    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = ask(SECRET)
    assert SECRET in server.requests[-1]["query"], "the live request carried it"
    assert SECRET.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert ask("another-value-in-ci") == live
    assert replaying.replayed == 1


def test_a_recording_keyed_with_a_camel_case_query_credential_is_found_again_on_a_miss(tmp_path):
    """Recorded before the name counted: its key and stored request hold the parameter."""
    path = tmp_path / "c.sqlite3"
    asked = canonicalize("GET", f"https://api.example.com/v1/items?sessionToken={SECRET}&page=2", b"", "")
    old = CanonicalRequest(asked.method, asked.host, asked.path, (("page", "2"), ("sessionToken", SECRET)), asked.body, asked.body_kind)
    cassette = SQLiteCache(path)
    cassette.put(Interaction.of(old, RecordedResponse(200, "OK", {}, b'{"items": []}')))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET request = ?", (old.to_json(),))
    assert asked.query == (("page", "2"),), "no longer in the key"
    cassette = SQLiteCache(path, readonly=True)
    found = RekeyIndex(MatchRules()).find(cassette, asked.fingerprint, 0)
    assert found is not None and found.response.body == b'{"items": []}'
    cassette.close()


# 2. A signed URL in a request body


def _sas(signed_at: str, signature: str) -> str:
    """An Azure SAS URL to a blob, as storage hands one out: its times and signature change with every signing."""
    return (f"https://acct.blob.core.windows.net/uploads/cat.png?sv=2021-08-06&st={signed_at}T21%3A00%3A00Z&se={signed_at}T22%3A00%3A00Z"
            f"&sr=b&sp=r&sig={signature}")


def _presigned(signed_at: str, signature: str) -> str:
    """An S3 presigned URL, as boto3's generate_presigned_url writes one."""
    return ("https://bucket.s3.amazonaws.com/uploads/cat.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential=AKIAQ7XK2M9P3KDHX2RZ%2F{signed_at.replace('-', '')}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={signed_at.replace('-', '')}T210000Z"
            f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}")


SIGNATURE = "Hx7%2Bq9KzP2mWv4LbN8RtY3cJ6dFgA1sE5uO0iQwXyZk%3D"
SIGNED_URLS = {"Azure SAS": _sas, "S3 presigned": _presigned}


def _describe(fake: Any, signed_at: str, signature: str) -> str:
    """The app passes image URLs it got from storage to the model, each signed at ``signed_at``."""
    images = [{"type": "image_url", "image_url": {"url": signed(signed_at, signature)}} for signed in SIGNED_URLS.values()]
    return _ask(fake, content=[{"type": "text", "text": "describe"}, *images])


def test_a_signed_url_in_a_request_is_stored_without_its_credentials_and_a_url_signed_again_replays(server, tmp_path):
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _describe(server, "2026-12-07", SIGNATURE)
    stored = cassette.read_bytes()
    assert SIGNATURE.encode() not in stored and b"AKIAQ7XK2M9P3KDHX2RZ" not in stored
    assert b"acct.blob.core.windows.net/uploads/cat.png" in stored and b"bucket.s3.amazonaws.com/uploads/cat.png" in stored, "the blobs stay in the key"
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _describe(server, "2026-12-08", "Zt4" + SIGNATURE[3:]) == live, "signed again the next day"
    assert replaying.replayed == 1


def test_a_signed_url_in_an_older_cassettes_request_fails_the_audit_and_still_replays(server, tmp_path, capsys):
    """Recorded before requests were scrubbed of it: the URLs whole in the stored request, which is keyed with them."""
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _describe(server, "2026-12-07", SIGNATURE)
    (recorded,) = SQLiteCache(cassette, readonly=True).interactions()
    for number, signed in enumerate(SIGNED_URLS.values(), start=1):
        _as_an_older_version_stored_it(cassette, signed("2026-12-07", SIGNATURE), scrubbed=recorded.request.body["messages"][0]["content"][number]["image_url"]["url"])
    assert f"column request (JSON, keys included): signed URL signature '{SIGNATURE[:6]}…" in _audited(cassette, capsys)
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _describe(server, "2026-12-07", SIGNATURE) == live
        assert _describe(server, "2026-12-08", "Zt4" + SIGNATURE[3:]) == live
    assert replaying.replayed == 2


# 5. A signed URL the model streams


def _streamed_answer(fake: Any, said: str, pieces: int | None) -> str:
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0,
                           default_headers={"x-fake-answer": said, **({"x-fake-piece-size": str(pieces)} if pieces else {})})
    with client.chat.completions.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "where is my picture?"}]) as answer:
        return answer.get_final_completion().choices[0].message.content


@pytest.mark.parametrize(("kind", "pieces"), [("Azure SAS", None), ("Azure SAS", 2), ("S3 presigned", 7)],
                         ids=["Azure SAS whole in one event", "Azure SAS 2 characters an event", "S3 presigned 7 characters an event"])
def test_a_signed_url_the_model_streams_is_stored_without_its_credentials(kind, pieces, server, tmp_path):
    url = SIGNED_URLS[kind]("2026-12-07", SIGNATURE)
    said = f"Here it is: {url} (valid for an hour)."
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert _streamed_answer(server, said, pieces) == said
    assert SIGNATURE.encode() not in cassette.read_bytes()
    assert not any(SIGNATURE[at : at + 8].encode() in cassette.read_bytes() for at in range(0, len(SIGNATURE) - 8)), "no piece of it either"
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        replayed = _streamed_answer(server, said, pieces)
    assert replayed.startswith("Here it is: ") and replayed.endswith("(valid for an hour).") and "ignature=<scrubbed>&" not in replayed
    assert replayed.replace(SIGNATURE, "<scrubbed>") == replayed and re.search(r"(?i)sig(nature)?=<scrubbed>", replayed), replayed


# 4. JSON nested two strings deep


def _twice_encoded(secret: str) -> str:
    """A tool's result as agent frameworks send it back: JSON whose field holds the tool's own JSON answer as text."""
    return json.dumps({"tool": "vault", "output": json.dumps({"api_key": secret, "region": "eu"})})


def test_a_secret_named_field_two_strings_deep_in_a_request_is_stored_scrubbed_and_any_value_replays(server, tmp_path):
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        _ask(server, tool_result=_twice_encoded(PASSWORD))
    assert PASSWORD.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        _ask(server, tool_result=_twice_encoded("another-value-in-ci"))
    assert replaying.replayed == 1


@pytest.mark.parametrize("pieces", [None, 4], ids=["whole", "streamed 4 characters an event"])
def test_a_secret_named_field_two_strings_deep_in_a_tool_call_the_model_answers_is_stored_scrubbed(pieces, server, tmp_path):
    """The model's arguments hold JSON text in a string: ``{"payload": "{\\"api_key\\": \\"…\\"}"}``."""
    headers = {**_told("payload", pieces), "x-fake-answer": json.dumps({"api_key": PASSWORD, "region": "eu"})}
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert json.loads(_chat(server, headers, stream=pieces is not None))["api_key"] == PASSWORD
    assert b"horse-battery-staple" not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert json.loads(_chat(server, headers, stream=pieces is not None)) == {"api_key": "<scrubbed>", "region": "eu"}


def test_a_key_two_strings_deep_in_an_older_cassette_fails_the_audit_and_still_replays(server, tmp_path, capsys):
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, tool_result=_twice_encoded(ANTHROPIC_KEY))
    _as_an_older_version_stored_it(cassette, ANTHROPIC_KEY)
    assert "column request (JSON, keys included): Anthropic API key 'sk-ant…NmAA'" in _audited(cassette, capsys)
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _ask(server, tool_result=_twice_encoded(ANTHROPIC_KEY)) == live
    assert replaying.replayed == 1


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_a_secret_named_fields_value_in_an_older_cassettes_answer_fails_the_audit_strings_deep_and_scrub_removes_it(depth, tmp_path, capsys):
    """Stored before the rules read that deep (or knew the name's spelling; three and more deep since d59ea36): the
    audit finds the value by its field's name, as deep as the scrub reads, and ``llm-replay scrub`` leaves JSON that still parses (at the top level:
    test_a_camel_case_credential_in_an_older_cassette_fails_the_audit_and_still_replays)."""
    value: Any = {"sessionToken": PASSWORD, "region": "eu"}
    for _ in range(depth):
        value = {"output": json.dumps(value)}
    path = tmp_path / "c.sqlite3"
    cassette = SQLiteCache(path)
    cassette.put(Interaction.of(canonicalize("POST", "https://api.example.com/v1/run", b"{}", "application/json"), RecordedResponse(200, "OK", {}, b"{}")))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET body = ?", (json.dumps(value).encode(),))  # as an older version stored it
    assert "column body (JSON, keys included): value of a secret-named field 'Tr0ub4…aple'" in _audited(path, capsys)
    assert main(["scrub", str(path)]) == 0
    (stored,) = SQLiteCache(path, readonly=True).interactions()
    read = json.loads(stored.response.body)
    for _ in range(depth):
        read = json.loads(read["output"])
    assert read == {"sessionToken": "<scrubbed>", "region": "eu"}


# 3. llm-replay scrub and an XML body


@pytest.mark.parametrize("found_by", ["its shape", "its variable"])
def test_scrub_keeps_an_xml_answer_well_formed(found_by, tmp_path, capsys, monkeypatch):
    """An XML answer of an older cassette with a key: ``llm-replay scrub`` finds it by its shape (no variable holds it)
    or replaces its variable's value as it stores the recording again; what it writes in its place is the placeholder
    as XML text, not a tag."""
    from xml.etree import ElementTree

    xml = f'<?xml version="1.0"?><Settings><Provider name="anthropic"><Key>{ANTHROPIC_KEY}</Key></Provider></Settings>'.encode()
    path = tmp_path / "c.sqlite3"
    cassette = SQLiteCache(path, scrubber=Scrubber(environ={}))
    cassette.put(Interaction.of(canonicalize("GET", "https://config.example.com/settings.xml", b"", ""), RecordedResponse(200, "OK", {"content-type": ["application/xml"]}, xml)))
    cassette.close()
    assert ElementTree.fromstring(xml).find("Provider/Key").text == ANTHROPIC_KEY
    if found_by == "its variable":
        monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    capsys.readouterr()
    assert main(["scrub", str(path)]) == 0
    (stored,) = SQLiteCache(path, readonly=True).interactions()
    assert ANTHROPIC_KEY.encode() not in stored.response.body
    expected = "<scrubbed:ANTHROPIC_API_KEY>" if found_by == "its variable" else "<scrubbed>"
    assert ElementTree.fromstring(stored.response.body).find("Provider/Key").text == expected
