"""Secrets where the rules by name did not look: credentials in query parameters named as gateways name them (Azure API
Management's ``subscription-key``, ``api_token``, ``auth_token``…), request headers of every credential kind, and a
secret inside a file sent as base64 in a JSON field. The real openai SDK against the loopback fake."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

import llm_replay
from llm_replay.cli import main
from llm_replay.engine.matching import MatchRules, RekeyIndex
from llm_replay.model.fingerprint import CanonicalRequest, canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.sqlite import SQLiteCache

SECRET = "Zq8" + "vT3nLp7Wx2Rk9Bd4Hs6"  # no variable holds it, no key shape: a secret only by where it stands
# Gateways and services that take a credential in the query: Azure API Management, GitLab, token-in-URL proxies.
QUERY_NAMES = ["subscription-key", "Subscription_Key", "api_token", "auth-token", "private_token", "access_key", "secret", "x-api-key", "client_assertion", "session_token", "acme_api_key"]


def _ask(fake, query: dict[str, str], content: str = "hi", **headers: str) -> str:
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_query=query, default_headers=headers)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}]).choices[0].message.content


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_a_credential_in_a_query_parameter_named_as_gateways_name_it_is_not_stored_and_any_value_replays(name, server, tmp_path):
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, {name: SECRET, "api-version": "2024-10-21"})
    assert SECRET in server.requests[-1]["query"], "the live request carried it"
    assert SECRET.encode() not in cassette.read_bytes()
    assert b"2024-10-21" in cassette.read_bytes(), "a parameter that is no credential stays in the key"
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _ask(server, {name: "another-value-in-ci", "api-version": "2024-10-21"}) == live
    assert replaying.replayed == 1


def test_a_recording_keyed_with_such_a_parameter_is_found_again_on_a_miss(tmp_path):
    """Recorded before the name counted as a credential: stored under the key of its query with the parameter (its
    value an environment variable's placeholder), and with that query in its stored request."""
    path = tmp_path / "c.sqlite3"
    asked = canonicalize("POST", f"https://gw.example.com/openai/chat?subscription-key={SECRET}&api-version=1", b'{"q": 1}', "application/json")
    old = CanonicalRequest(asked.method, asked.host, asked.path, (("api-version", "1"), ("subscription-key", "<scrubbed:APIM_KEY>")), asked.body, asked.body_kind)
    cassette = SQLiteCache(path)
    cassette.put(Interaction.of(old, RecordedResponse(200, "OK", {}, b'{"answer": 1}')))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET request = ?", (old.to_json(),))
    cassette = SQLiteCache(path, readonly=True)
    assert cassette.get(asked.fingerprint) is None, "its key is the old one"
    found = RekeyIndex(MatchRules()).find(cassette, asked.fingerprint, 0)
    assert found is not None and found.response.body == b'{"answer": 1}'
    cassette.close()


def test_no_request_header_reaches_the_cassette_whatever_credential_it_carries(server, tmp_path):
    """Checked sound: request headers are never stored, by any name (Gemini's, Azure's, AWS's, Basic auth, cookies)."""
    headers = {"x-goog-api-key": "a" + SECRET, "api-key": "b" + SECRET, "anthropic-api-key": "c" + SECRET, "x-amz-security-token": "d" + SECRET,
               "proxy-authorization": "Basic " + base64.b64encode(f"user:e{SECRET}".encode()).decode(), "cookie": f"session=f{SECRET}",
               "x-custom-gateway": "g" + SECRET}
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, {}, **headers)
    assert server.requests[-1]["headers"]["x-custom-gateway"] == "g" + SECRET, "the live request carried them"
    assert SECRET.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert _ask(server, {}) == live


ANTHROPIC_KEY = "sk-" + "ant-api03-Zx9Kq2Lm7Pv4Rt8Wn3Bc6Hj1Df5Gs0Ay2Eu7Io4Kp9Ml3Nb6Vc8Xz1Qw5Er7Ty2Ui4Op6As8Df0Gh3Jk5Lz7Xc9Vb1NmAA"  # fake


def _send_file(fake, data: bytes) -> str:
    """A text file sent as base64 in the JSON body, as OpenAI's file input takes one (a data: URL), and Anthropic's
    document source (a bare base64 string) beside it."""
    encoded = base64.b64encode(data).decode()
    content = [{"type": "file", "file": {"filename": "settings.env", "file_data": f"data:text/plain;base64,{encoded}"}},
               {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": encoded}},
               {"type": "text", "text": "summarise this file"}]
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}]).choices[0].message.content


def test_a_key_in_a_file_sent_as_base64_in_json_fails_the_audit_and_scrub_removes_it_and_it_still_replays(server, tmp_path, capsys):
    data = f"ANTHROPIC_API_KEY={ANTHROPIC_KEY}\nREGION=eu\n".encode()
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _send_file(server, data)
    assert base64.b64encode(data) in cassette.read_bytes() and ANTHROPIC_KEY.encode() not in cassette.read_bytes(), "no text search sees it"

    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    assert "column request, base64 body decoded: Anthropic API key 'sk-ant…NmAA'" in capsys.readouterr().out
    assert main(["scrub", str(cassette)]) == 0
    assert base64.b64encode(data) not in cassette.read_bytes()
    (stored,) = SQLiteCache(cassette, readonly=True).interactions()
    (sent,) = [part for part in stored.request.body["messages"][0]["content"] if part["type"] == "document"]
    assert base64.b64decode(sent["source"]["data"]) == b"ANTHROPIC_API_KEY=<scrubbed>\nREGION=eu\n"

    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _send_file(server, data) == live, "keyed as recorded: the same file still replays"
    assert replaying.replayed == 1


AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYq7Wm3Nd9Kc2V"  # fake
AWS_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDq7Wm3Nd9Kc2Vb5Xz8Lp1Rt6Gf0Js4Ya7EoIu3Pk2Mn5Bv9Cx1Zq4Wr6Et8Ty0Ua2Sd4Fg6Hj8Kl0Zx2Cv4Bn6M=="  # fake
_STS = (f"<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>ASIAQ7EXAMPLE3KDHX2R</AccessKeyId>"
        f"<SecretAccessKey>{AWS_SECRET}</SecretAccessKey><SessionToken>{AWS_TOKEN}</SessionToken><Expiration>2026-12-07T22:00:00Z</Expiration>"
        "</Credentials></AssumeRoleResult></AssumeRoleResponse>").encode()
_SSO = json.dumps({"roleCredentials": {"accessKeyId": "ASIAQ7EXAMPLE3KDHX2R", "secretAccessKey": AWS_SECRET, "sessionToken": AWS_TOKEN, "expiration": 1765148400000}}).encode()
# Where botocore fetches temporary credentials when a profile assumes a role or signs in with SSO: recorded like any call
CREDENTIALS = {
    "sts AssumeRole (XML)": ("https://sts.amazonaws.com/", "sts", "AssumeRole", {"content-type": ["text/xml"]}, _STS),
    "sso GetRoleCredentials (JSON)": ("https://portal.sso.us-east-1.amazonaws.com/federation/credentials?role_name=dev&account_id=1", "sso", "GetRoleCredentials",
                                      {"content-type": ["application/json"]}, _SSO),
}


def _botocore_parsed(service: str, operation: str, body: bytes) -> dict[str, str]:
    """The temporary credentials as botocore's own parser for the operation reads them from ``body``."""
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model(service)
    parsed = create_parser(model.metadata["protocol"]).parse({"body": body, "headers": {}, "status_code": 200}, model.operation_model(operation).output_shape)
    credentials = parsed.get("Credentials") or parsed["roleCredentials"]
    return {name[0].lower() + name[1:]: value for name, value in credentials.items() if isinstance(value, str)}


@pytest.mark.parametrize("case", CREDENTIALS)
def test_aws_temporary_credentials_a_credential_endpoint_answers_are_stored_scrubbed_and_still_parse(case):
    url, service, operation, headers, body = CREDENTIALS[case]
    assert _botocore_parsed(service, operation, body)["secretAccessKey"] == AWS_SECRET
    request = canonicalize("POST" if service == "sts" else "GET", url, b"Action=AssumeRole" if service == "sts" else b"", "application/x-www-form-urlencoded")
    stored = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(200, "OK", headers, body))).response.body
    assert AWS_SECRET.encode() not in stored and AWS_TOKEN.encode() not in stored
    credentials = _botocore_parsed(service, operation, stored)
    assert (credentials["secretAccessKey"], credentials["sessionToken"], credentials["accessKeyId"]) == ("<scrubbed>", "<scrubbed>", "ASIAQ7EXAMPLE3KDHX2R")


@pytest.mark.parametrize("case", CREDENTIALS)
def test_aws_temporary_credentials_in_an_older_cassette_fail_the_audit_and_scrub_leaves_a_body_botocore_parses(case, tmp_path, capsys):
    url, service, operation, headers, body = CREDENTIALS[case]
    path = tmp_path / "c.sqlite3"
    cassette = SQLiteCache(path)
    cassette.put(Interaction.of(canonicalize("GET", url, b"", ""), RecordedResponse(200, "OK", headers, b"{}")))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET body = ?", (body.decode(),))  # as an older version stored it
    capsys.readouterr()
    assert main(["audit", str(path)]) == 1
    out = capsys.readouterr().out
    assert "AWS secret access key" in out and "AWS session token" in out, out
    assert main(["scrub", str(path)]) == 0
    (stored,) = SQLiteCache(path, readonly=True).interactions()
    credentials = _botocore_parsed(service, operation, stored.response.body)
    assert AWS_SECRET not in credentials.values() and AWS_TOKEN not in credentials.values() and credentials["accessKeyId"] == "ASIAQ7EXAMPLE3KDHX2R"


def test_each_form_of_a_named_aws_secret_key_is_found_wherever_the_others_stand():
    """A shape with several anchors: one anchor's match further on hid the other anchor's earlier occurrences."""
    from llm_replay.cli.secret_shapes import secret_shapes

    other = "Zx9Kq2Lm7Pv4Rt8Wn3Bc6Hj1Df5Gs0Ay2Eu7Io4K"
    text = f'{{"secretAccessKey": "{AWS_SECRET}"}} and later aws_secret_access_key = {other}'
    assert {value for kind, value in secret_shapes(text) if kind == "AWS secret access key"} == {AWS_SECRET, other}


_SAS = "sv=2021-08-06&sr=b&rscd=inline&rsct=image/png&skoid=6aaadede&sktid=a48cca56&se=2026-12-07T23%3A00%3A00Z&sp=r&sig=" + "Hx7%2Bq9KzP2mWv4LbN8RtY3cJ6dFgA1sE5uO0iQwXyZk%3D"
_IMAGE_URL = f"https://oaidalleapiprodscus.blob.core.windows.net/private/org-1/user-1/img-abc.png?st=2026-12-07T21%3A00%3A00Z&{_SAS}"
_PRESIGNED = ("https://bucket.s3.amazonaws.com/out/result.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAQ7XK2M9P3KDHX2RZ%2F20261207%2Fus-east-1%2Fs3%2Faws4_request"
              f"&X-Amz-Date=20261207T210000Z&X-Amz-Expires=3600&X-Amz-Security-Token={AWS_TOKEN}&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "9f3c" * 16)


@pytest.mark.parametrize("url", [_IMAGE_URL, _PRESIGNED], ids=["Azure SAS (an image URL DALL-E answers)", "S3 presigned"])
def test_a_signed_url_in_an_answer_is_stored_without_its_credentials_and_fetching_it_still_replays(url):
    """The URL's credential parameters, which a request's query never keeps, are kept out of the answer's body and its
    Location header too; the URL still names the same resource, so a fetch of it (keyed without them) replays."""
    body = json.dumps({"created": 1765141200, "data": [{"url": url, "revised_prompt": "a cat"}]}).encode()
    request = canonicalize("POST", "https://api.openai.com/v1/images/generations", b'{"prompt": "a cat"}', "application/json")
    stored = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(201, "Created", {"location": [url]}, body))).response
    for secret in ("Hx7%2Bq9KzP2mWv4LbN8RtY3cJ6dFgA1sE5uO0iQwXyZk%3D", AWS_TOKEN, "ASIAQ7XK2M9P3KDHX2RZ", "9f3c" * 16):
        assert secret.encode() not in stored.body and secret not in stored.headers["location"][0], secret
    (scrubbed_url,) = [item["url"] for item in json.loads(stored.body)["data"]]
    assert stored.headers["location"] == [scrubbed_url]
    assert canonicalize("GET", scrubbed_url, b"", "").fingerprint == canonicalize("GET", url, b"", "").fingerprint
    assert "sp=r" in scrubbed_url or "X-Amz-Expires=3600" in scrubbed_url, "the other parameters stay"


OPENAI_SHAPED = "sk-" + "proj-" + "Qm7vR2kLp9XwZ4tYb8Nc" + "T3BlbkFJ" + "u0iK7oP2lM9nB4vC6xZ8"  # fake, in OpenAI's shape


def _rejected(fake, key: str) -> str:
    client = openai.OpenAI(base_url=fake.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return raised.value.message


def test_an_error_answer_echoing_the_key_its_request_sent_is_stored_and_replayed_without_it(server, tmp_path, capsys):
    """A key given in code (or read from a variable whose name says nothing secret) is in no scrubbed variable; a 401
    that names the key it was given (as OpenAI-compatible gateways do) kept it whole in the cassette."""
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        assert OPENAI_SHAPED in _rejected(server, OPENAI_SHAPED), "the live answer named the key"
    assert recording.recorded == 1, "a 401 is kept: the replay fails as the live call did"
    assert OPENAI_SHAPED.encode() not in cassette.read_bytes()
    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 0
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _rejected(server, OPENAI_SHAPED) == "Error code: 401 - Incorrect API key provided: <scrubbed:authorization header>."
    assert replaying.replayed == 1


GOOGLE_KEY = "AIza" + "SyD4x9Kq2Lm7Pv4Rt8Wn3Bc6Hj1Df5Gs0Ay"  # fake, in Google's shape


def test_an_error_page_echoing_the_url_its_request_sent_is_stored_without_the_key_in_its_query():
    """Google's front end answers an unknown path with an HTML page naming the whole URL, ``?key=`` and all (no fake here
    writes one, so the page is built as Google's is and put through the record path's scrub)."""
    from llm_replay.model.scrub import sent_credentials

    url = f"https://generativelanguage.googleapis.com/v1beta/models/gemini-9:generateContent?alt=json&key={GOOGLE_KEY}"
    page = (f"<html><body><p><b>404.</b> <ins>That's an error.</ins><p>The requested URL <code>/v1beta/models/gemini-9:generateContent?alt=json&amp;key={GOOGLE_KEY}"
            "</code> was not found on this server.</body></html>").encode()
    request = canonicalize("POST", url, b"{}", "application/json")
    with sent_credentials({"content-type": "application/json"}, url):
        stored = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(404, "Not Found", {"content-type": ["text/html"]}, page)))
    assert GOOGLE_KEY.encode() not in stored.response.body
    assert b"alt=json&amp;key=<scrubbed:key query parameter>" in stored.response.body
    unrelated = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(404, "Not Found", {}, page)))
    assert unrelated.response.body == page, "outside a recording nothing is known of the request"


def test_a_key_in_an_event_streams_base64_chunk_is_one_finding(tmp_path, capsys):
    """The chunks' base64 is read once, as the event stream's payloads: not again as base64 in a JSON text."""
    from fakes.bedrock_api import event_frame

    events = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}} for text in ("key ", ANTHROPIC_KEY)]
    body = b"".join(event_frame("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()}) for event in events)
    cassette = SQLiteCache(tmp_path / "c.sqlite3", scrubber=Scrubber(environ={}))
    cassette.put(Interaction.of(canonicalize("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke-with-response-stream", b"{}", "application/json"),
                                RecordedResponse(200, "OK", {"content-type": ["application/vnd.amazon.eventstream"]}, body)))
    cassette.close()
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "c.sqlite3")]) == 1
    out = capsys.readouterr().out
    assert "column body, event stream payloads decoded: Anthropic API key 'sk-ant…NmAA'" in out and "llm-replay audit: 1 secrets" in out, out
