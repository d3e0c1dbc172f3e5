"""Secrets in places the first two rounds did not read: a signed URL written with its ``&`` escaped for HTML or JSON, or
percent-encoded whole (a URL passed as a query parameter of another URL); a secret-named field in JSON three or more
strings deep. The real openai SDK against the loopback fake; an older cassette made by putting the secret back where the
scrub replaced it and keying the recording as it was keyed then."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import pytest
from test_embedded_json_secrets import PASSWORD, _chat
from test_secrets_round2 import SIGNATURE, _as_an_older_version_stored_it, _ask, _audited, _sas, _streamed_answer
from test_unusual_secret_places import ANTHROPIC_KEY, AWS_SECRET, AWS_TOKEN

import llm_replay
from llm_replay.cli import main
from llm_replay.engine.matching import MatchRules, RekeyIndex
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.sqlite import SQLiteCache

# 1. A signed URL with its separators escaped


def _html(url: str) -> str:
    return url.replace("&", "&amp;")


def _json_escaped_ampersand(url: str) -> str:
    """As Go's encoder writes a URL in JSON text, which a tool's result holds: ``&`` as ``\\u0026``."""
    return url.replace("&", "\\u0026")


def _passed_to_a_proxy(url: str) -> str:
    """An image proxy's URL taking the signed URL as a query parameter: the signed URL percent-encoded whole."""
    return "https://images.example.com/resize?w=512&src=" + quote(url, safe="")


ENCODINGS: dict[str, Callable[[str], str]] = {
    "HTML-escaped": _html,
    "HTML numeric entity": lambda url: url.replace("&", "&#38;"),
    "JSON-escaped": _json_escaped_ampersand,
    "percent-encoded whole": _passed_to_a_proxy,
}
# what a signature looks like once its URL is written so: its own %2B and %3D encoded once more when passed whole
_WRITTEN_SIGNATURES = (SIGNATURE, quote(SIGNATURE, safe=""))


def _no_signature_in(data: bytes) -> bool:
    return not any(written.encode() in data for written in _WRITTEN_SIGNATURES)


def _as_replayed(live: str) -> str:
    """The fake's answer echoes the prompt: replayed, it holds the placeholder where the signature was."""
    for written in _WRITTEN_SIGNATURES:
        live = live.replace(written, "<scrubbed>")
    return live


def _each_encoding(signed_at: str, signature: str) -> str:
    """The same signed URL written each way (one line: the fake takes its answer from a request header)."""
    return " then ".join(f"{name}: {encode(_sas(signed_at, signature))}" for name, encode in ENCODINGS.items())


@pytest.mark.parametrize("pieces", [None, 5], ids=["one answer", "streamed 5 characters an event"])
def test_an_escaped_or_encoded_signed_url_in_an_answer_is_stored_without_its_signature(pieces, server, tmp_path):
    said = f"Here they are: {_each_encoding('2026-12-07', SIGNATURE)} (valid for an hour)."
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert _streamed_answer(server, said, pieces) == said
    assert _no_signature_in(cassette.read_bytes())
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        replayed = _streamed_answer(server, said, pieces)
    assert replayed.startswith("Here they are: HTML-escaped: https://") and replayed.endswith("(valid for an hour).")
    assert replayed.count("<scrubbed>") == len(ENCODINGS) and _as_replayed(said) == replayed, replayed


def test_an_escaped_or_encoded_signed_url_in_a_request_is_stored_without_it_and_a_url_signed_again_replays(server, tmp_path):
    def describe(signed_at: str, signature: str) -> str:
        return _ask(server, content=f"describe the pictures at {_each_encoding(signed_at, signature)}")

    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = describe("2026-12-07", SIGNATURE)
    stored = cassette.read_bytes()
    assert _no_signature_in(stored) and b"acct.blob.core.windows.net" in stored
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert describe("2026-12-08", "Zt4" + SIGNATURE[3:]) == _as_replayed(live), "signed again the next day"
    assert replaying.replayed == 1


def test_a_url_passed_whole_in_an_older_cassettes_request_fails_the_audit_and_still_replays(server, tmp_path, capsys):
    """Recorded before the rule read a percent-encoded URL: the URL whole in the stored request, keyed with it. The audit
    finds its signature; the lookup, keyed without it now, finds the recording under its old key."""
    url = _passed_to_a_proxy(_sas("2026-12-07", SIGNATURE))
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, content=url)
    (recorded,) = SQLiteCache(cassette, readonly=True).interactions()
    _as_an_older_version_stored_it(cassette, url, scrubbed=recorded.request.body["messages"][0]["content"])
    assert f"column request (JSON, keys included): signed URL signature '{quote(SIGNATURE, safe='')[:6]}…" in _audited(cassette, capsys)
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _ask(server, content=url) == _as_replayed(live)
    assert replaying.replayed == 1


# 2. A secret-named field three or more strings deep


def _encoded(value: Any, times: int) -> Any:
    """``value`` as JSON text held in a field of JSON text, ``times`` over: an agent framework's tool result holding a
    tool's result that holds a service's JSON answer."""
    for _ in range(times):
        value = {"output": json.dumps(value)}
    return value


@pytest.mark.parametrize("deep", [3, 5])
def test_a_secret_named_field_three_or_more_strings_deep_in_a_request_is_stored_scrubbed_and_any_value_replays(deep, server, tmp_path):
    """The tool's result the app sends back is one string deep already: ``deep - 1`` more encodings inside it."""
    def tool_result(value: str) -> str:
        return json.dumps(_encoded({"api_key": value, "region": "eu"}, deep - 1))

    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        _ask(server, tool_result=tool_result(PASSWORD))
    assert PASSWORD.encode() in server.requests[-1]["body"], "the live request carried it"
    assert PASSWORD.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        _ask(server, tool_result=tool_result("another-value-in-ci"))
    assert replaying.replayed == 1


@pytest.mark.parametrize("stream", [False, True], ids=["one answer", "streamed whole in one event"])
def test_a_secret_named_field_three_strings_deep_in_a_tool_call_the_model_answers_is_stored_scrubbed(stream, server, tmp_path):
    """The model's arguments (one string deep) hold JSON text whose field holds JSON text with the key."""
    headers = {"x-fake-argument": "payload", "x-fake-answer": json.dumps(_encoded({"api_key": PASSWORD, "region": "eu"}, 1))}
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert PASSWORD in _chat(server, headers, stream=stream)
    assert PASSWORD.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        replayed = json.loads(_chat(server, headers, stream=stream))
    assert json.loads(replayed["output"]) == {"api_key": "<scrubbed>", "region": "eu"}


# 3. What llm-replay prints of an older cassette


def _older_cassette(path: Path, answer: bytes) -> str:
    """A recording whose answer an older llm_replay stored with a secret (before its rule counted); its key."""
    cassette = SQLiteCache(path, scrubber=Scrubber(environ={}))
    cassette.put(Interaction.of(canonicalize("POST", "https://api.example.com/v1/login", b'{"user": "ada"}', "application/json"), RecordedResponse(200, "OK", {}, b"{}")))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET body = ?", (answer,))
        (key,) = db.execute("SELECT fingerprint FROM interactions").fetchone()
    return key


@pytest.mark.parametrize("command", ["show", "diff", "textconv"])
def test_what_llm_replay_prints_of_an_older_cassette_is_scrubbed(command, tmp_path, capsys, env):
    """``show``, ``diff`` (a CI job comparing the main branch's cassette with a pull request's) and ``textconv`` (``git
    diff``, ``git log -p``) print a recording whole: a secret an older version stored, found by its field's name (a
    camelCase name), a signed URL's signature, or as the value of a key the printing machine holds, went to the log."""
    env.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    answer = {"accessToken": PASSWORD, "picture": _html(_sas("2026-12-07", SIGNATURE)), "echo": ANTHROPIC_KEY}
    old, new = tmp_path / "old.sqlite3", tmp_path / "new.sqlite3"
    key = _older_cassette(old, json.dumps({"user": "ada"}).encode())
    _older_cassette(new, json.dumps(answer).encode())
    capsys.readouterr()
    main({"show": ["show", key[:12], "--cassette", str(new)], "diff": ["diff", str(old), str(new)], "textconv": ["textconv", str(new)]}[command])
    printed = capsys.readouterr().out
    assert "accessToken" in printed and "acct.blob.core.windows.net" in printed, printed
    for secret in (PASSWORD, SIGNATURE, ANTHROPIC_KEY):
        assert secret not in printed, (secret, printed)


# 4. A LangChain model's settings written as Python


def _ask_for_a_city(fake: Any, cache: Any, token: str) -> Any:
    """A structured answer (``response_format`` a class), with a gateway's token and a secret given at the call: LangChain
    writes the call's settings in its cache key as a Python list (``[('extra_headers', {'X-Gateway-Token': '…'}), …]``),
    kept as text because the class in it is no JSON."""
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake.base_url, api_key=fake.api_key, max_retries=0, cache=cache,
                       default_headers={"x-fake-answer": '{"name": "Paris"}'})
    answer = model.invoke("capital of France?", response_format=City, extra_headers={"X-Gateway-Token": token}, extra_body={"client_secret": token})
    return answer.content


def test_a_credential_in_a_langchain_cache_key_written_as_python_is_stored_scrubbed_and_any_value_replays(server, tmp_path, capsys):
    from llm_replay.langchain import SQLiteCache as LangChainCache

    path = tmp_path / "c.sqlite3"
    cache = LangChainCache(path)
    live = _ask_for_a_city(server, cache, PASSWORD)
    assert PASSWORD.encode() in server.requests[-1]["body"], "the live request carried it"
    cache.cassette.close()
    assert PASSWORD.encode() not in path.read_bytes()
    server.stop()
    assert _ask_for_a_city(server, LangChainCache(path), "another-value-in-ci") == live


def test_a_credential_in_an_older_langchain_cache_key_fails_the_audit_and_is_found_again_on_a_miss(server, tmp_path, capsys):
    """Stored before the rule read Python: the token in the stored key, keyed with it. The audit finds it by its name; a
    pytest session's miss path (``RekeyIndex``) finds the recording under the key the call has now."""
    from llm_replay.langchain import SQLiteCache as LangChainCache

    path = tmp_path / "c.sqlite3"
    cache = LangChainCache(path)
    _ask_for_a_city(server, cache, PASSWORD)
    cache.cassette.close()
    (recorded,) = SQLiteCache(path, readonly=True).interactions()
    _as_an_older_version_stored_it(path, f"'{PASSWORD}'", scrubbed="'<scrubbed>'")  # where the Python rule wrote it
    assert "column request (JSON, keys included): value of a secret-named field 'Tr0ub4…aple'" in _audited(path, capsys)
    cassette = SQLiteCache(path, readonly=True)
    assert cassette.get(recorded.fingerprint, 0) is None, "keyed with the token"
    found = RekeyIndex(MatchRules()).find(cassette, recorded.fingerprint, 0)
    assert found is not None and found.response.body == recorded.response.body


# 5. AWS credentials a container or an instance hands botocore


def _container_credentials() -> bytes:
    """What the ECS/EKS container credential endpoint and EC2's instance metadata answer: the session token is ``Token``."""
    return json.dumps({"AccessKeyId": "ASIAQ7EXAMPLE3KDHX2R", "SecretAccessKey": AWS_SECRET, "Token": AWS_TOKEN,
                       "Expiration": "2099-12-07T22:00:00Z", "RoleArn": "arn:aws:iam::123456789012:role/ci"}).encode()


class _CredentialEndpoint(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = _container_credentials()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_aws_credentials_a_container_endpoint_answers_while_recording_are_stored_scrubbed(aws, tmp_path):
    """A CI job on ECS or CodeBuild (or EKS pod identity): botocore fetches the task role's credentials over HTTP, through
    urllib3, while the suite records. Its ``Token`` (the session token) reached the cassette beside the scrubbed secret key."""
    import botocore.session

    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CredentialEndpoint)
    threading.Thread(target=endpoint.serve_forever, args=(0.05,), daemon=True).start()
    aws.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{endpoint.server_address[1]}/v2/credentials/ci")
    cassette = tmp_path / "c.sqlite3"
    try:
        with llm_replay.use_cassette(cassette, mode="record") as recording:
            fetched = botocore.session.get_session().get_credentials().get_frozen_credentials()
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    assert (fetched.secret_key, fetched.token) == (AWS_SECRET, AWS_TOKEN), "botocore got them live"
    assert recording.recorded == 1
    stored = cassette.read_bytes()
    assert AWS_SECRET.encode() not in stored and AWS_TOKEN.encode() not in stored
    (recorded,) = SQLiteCache(cassette, readonly=True).interactions()
    assert json.loads(recorded.response.body) == {**json.loads(_container_credentials()), "SecretAccessKey": "<scrubbed>", "Token": "<scrubbed>"}


def test_a_strict_miss_does_not_print_a_secret_the_closest_recording_of_an_older_cassette_kept(server, tmp_path):
    """The miss message compares the request with the closest recording, field by field: an older cassette's stored value
    (before its rule counted) went to the CI log beside the placeholder the request has now."""
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        _ask(server, content="what is the capital of France?", auth={"accessToken": PASSWORD})
    _as_an_older_version_stored_it(cassette, PASSWORD)
    server.stop()
    with pytest.raises(llm_replay.CassetteMiss) as miss, llm_replay.use_cassette(cassette, mode="replay"):
        _ask(server, content="what is the capital of Spain?", auth={"accessToken": PASSWORD})
    assert "closest recording" in str(miss.value) and "Spain" in str(miss.value)
    assert PASSWORD not in str(miss.value), str(miss.value)
