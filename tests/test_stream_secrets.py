"""A secret a model streams back a few characters per event: never whole in one event, yet whole in what the SDK
hands the test. Real SDKs (anthropic, openai, google-genai, boto3) against the loopback fakes, which stream a text
the request asks for (``x-fake-answer``) in pieces of a few characters (``x-fake-piece-size``)."""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.eventstream import EventStreamBuffer
from conftest import printed
from google import genai
from google.genai import types

import llm_replay
from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.sqlite import SQLiteCache

ANTHROPIC_KEY = "sk-" + "ant-api03-Zx9Kq2Lm7Pv4Rt8Wn3Bc6Hj1Df5Gs0Ay2Eu7Io4Kp9Ml3Nb6Vc8Xz1Qw5Er7Ty2Ui4Op6As8Df0Gh3Jk5Lz7Xc9Vb1NmAA"  # fake
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYq7Wm3Nd9Kc2V"  # fake
AWS_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDq7Wm3Nd9Kc2Vb5Xz8Lp1Rt6Gf0Js4Ya7EoIu3Pk2Mn5Bv9Cx1Zq4Wr6Et8Ty0Ua2Sd4Fg6Hj8Kl0Zx2Cv4Bn6M=="
NAME = "TENANT_ADMIN_KEY"  # secret by its name (KEY); the SDKs' own keys are the fakes'
ANSWER = "The key you gave me is {} and nothing else."


def _told(secret: str, size: int | None = 3) -> dict[str, str]:
    """The headers that make a fake answer ``ANSWER`` with ``secret`` in it, streamed ``size`` characters per event."""
    return {"x-fake-answer": ANSWER.format(secret), **({"x-fake-piece-size": str(size)} if size else {})}


# Each case: the call through its SDK (the text the SDK joins), and the pieces of that text in one stored body,
# read with no help from llm_replay (SSE lines, or botocore's own event stream parser, which checks every CRC).
def _anthropic_text(fake: Any, headers: dict[str, str]) -> str:
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "repeat my key"}]) as stream:
        return stream.get_final_text()


def _anthropic_tool(fake: Any, headers: dict[str, str]) -> str:
    """The tool call's argument ``city`` (or the one ``x-fake-argument`` names), as the SDK parsed the joined JSON."""
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)
    tools = [{"name": "note", "description": "keep a note", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, tools=tools, messages=[{"role": "user", "content": "note my key"}]) as stream:
        return stream.get_final_message().content[0].input[headers.get("x-fake-argument", "city")]


def _openai(fake: Any, headers: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)


def _chat_text(fake: Any, headers: dict[str, str]) -> str:
    stream = _openai(fake, headers).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "repeat my key"}], stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def _chat_tool(fake: Any, headers: dict[str, str]) -> str:
    tools = [{"type": "function", "function": {"name": "note", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    with _openai(fake, headers).chat.completions.stream(model="gpt-4o-mini", tools=tools, messages=[{"role": "user", "content": "note my key"}]) as stream:
        arguments = stream.get_final_completion().choices[0].message.tool_calls[0].function.arguments
    return json.loads(arguments)[headers.get("x-fake-argument", "q")]


def _responses_text(fake: Any, headers: dict[str, str]) -> str:
    stream = _openai(fake, headers).responses.create(model="gpt-4.1-mini", input="repeat my key", stream=True)
    deltas = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
    with _openai(fake, headers).responses.stream(model="gpt-4.1-mini", input="repeat my key again") as again:  # its final response
        assert again.get_final_response().output_text == deltas
    return deltas


def _gemini_text(fake: Any, headers: dict[str, str]) -> str:
    client = genai.Client(api_key=fake.api_key, http_options=types.HttpOptions(base_url=fake.base_url, headers=headers))
    return "".join(chunk.text or "" for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="repeat my key"))


def _gemini_array_text(fake: Any, headers: dict[str, str]) -> str:
    """streamGenerateContent without ``alt=sse`` (a JSON array of chunks, which google-genai never asks for), read as a
    REST client reads it, each chunk through google-genai's own response type."""
    answer = httpx.post(f"{fake.base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent", headers={"x-goog-api-key": fake.api_key, **headers},
                        json={"contents": [{"role": "user", "parts": [{"text": "repeat my key"}]}]})
    answer.raise_for_status()
    return "".join(types.GenerateContentResponse.model_validate(chunk).text or "" for chunk in answer.json())


def _in_several_data_lines(call: Callable[[Any, dict[str, str]], str]) -> Callable[[Any, dict[str, str]], str]:
    """``call`` with each event's JSON spread over several ``data:`` lines (the SDK joins them with newlines)."""
    return lambda fake, headers: call(fake, {**headers, "x-fake-data-lines": "several"})


def _client(*args: Any, **kwargs: Any) -> Any:
    """A boto3 client of a session of its own: boto3's default session keeps the credentials it read first, and would
    sign other tests' requests with this test's session token."""
    return boto3.session.Session().client(*args, **kwargs)


def _bedrock(fake: Any, headers: dict[str, str]) -> Any:
    client = _client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.base_url,
                          aws_access_key_id=fake.api_key, aws_secret_access_key=fake.secret_key)
    client.meta.events.register("before-sign.bedrock-runtime.*", lambda request, **_: [request.headers.__setitem__(*item) for item in headers.items()])
    return client


def _converse_text(fake: Any, headers: dict[str, str]) -> str:
    answer = _bedrock(fake, headers).converse_stream(modelId="us.amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "repeat my key"}]}])
    return "".join(event["contentBlockDelta"]["delta"]["text"] for event in answer["stream"] if "contentBlockDelta" in event)


def _invoke_text(fake: Any, headers: dict[str, str], prompt: str = "repeat my key") -> str:
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": [{"role": "user", "content": prompt}]})
    answer = _bedrock(fake, headers).invoke_model_with_response_stream(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=body)
    events = [json.loads(event["chunk"]["bytes"]) for event in answer["body"]]
    return "".join(event["delta"]["text"] for event in events if event["type"] == "content_block_delta")


def _sse(pick: Callable[[dict], Any]) -> Callable[[bytes], str]:
    def pieces(body: bytes) -> str:
        return "".join(piece for event in _sse_events(body) if isinstance(piece := _picked(pick, event), str))
    return pieces


def _sse_events(body: bytes) -> list[Any]:
    """Each event's JSON, as the SSE spec reads it: an event ends at a blank line, its ``data:`` lines joined by newlines."""
    events, data = [], []
    for line in [*body.decode().splitlines(), ""]:
        if line.startswith("data:"):
            data.append(line[6:] if line[5:6] == " " else line[5:])
        elif not line and data:
            if data != ["[DONE]"]:
                events.append(json.loads("\n".join(data)))
            data = []
    return events


def _picked(pick: Callable[[dict], Any], event: dict) -> Any:
    try:
        return pick(event)
    except (KeyError, IndexError, TypeError):
        return None


def _json_array(pick: Callable[[dict], Any]) -> Callable[[bytes], str]:
    return lambda body: "".join(piece for event in json.loads(body) if isinstance(piece := _picked(pick, event), str))


def _field(pieces: Callable[[bytes], str], name: str) -> Callable[[bytes], str]:
    """A tool call's arguments, joined from their pieces: the JSON's ``name``."""
    return lambda body: json.loads(pieces(body))[name]


def _event_stream(pick: Callable[[dict], Any], inner: bool) -> Callable[[bytes], str]:
    def pieces(body: bytes) -> str:
        buffer = EventStreamBuffer()
        buffer.add_data(body)
        payloads = [json.loads(message.payload) for message in buffer]  # botocore checks both CRCs of every frame
        events = [json.loads(base64.b64decode(payload["bytes"])) if inner else payload for payload in payloads]
        return "".join(piece for event in events if isinstance(piece := _picked(pick, event), str))
    return pieces


Case = tuple[str, Callable[[Any, dict[str, str]], str], Callable[[bytes], str]]
# A tool call's arguments: the JSON text its pieces make up.
ARGUMENTS: dict[str, Case] = {
    "anthropic input_json_delta": ("anthropic_server", _anthropic_tool, _sse(lambda e: e["delta"]["partial_json"])),
    "openai chat tool_calls arguments": ("server", _chat_tool, _sse(lambda e: e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"])),
}
_anthropic_text_pieces = _sse(lambda e: e["delta"]["text"])
_chat_text_pieces = _sse(lambda e: e["choices"][0]["delta"]["content"])
_gemini_pick: Callable[[dict], Any] = lambda e: e["candidates"][0]["content"]["parts"][0]["text"]  # noqa: E731
CASES: dict[str, Case] = {
    "anthropic text_delta": ("anthropic_server", _anthropic_text, _anthropic_text_pieces),
    "anthropic text_delta, several data: lines an event": ("anthropic_server", _in_several_data_lines(_anthropic_text), _anthropic_text_pieces),
    "anthropic input_json_delta": ("anthropic_server", _anthropic_tool, _field(ARGUMENTS["anthropic input_json_delta"][2], "city")),
    "openai chat delta.content": ("server", _chat_text, _chat_text_pieces),
    "openai chat delta.content, several data: lines an event": ("server", _in_several_data_lines(_chat_text), _chat_text_pieces),
    "openai chat tool_calls arguments": ("server", _chat_tool, _field(ARGUMENTS["openai chat tool_calls arguments"][2], "q")),
    "openai response.output_text.delta": ("server", _responses_text, _sse(lambda e: e["delta"] if e["type"] == "response.output_text.delta" else None)),
    "gemini parts text": ("gemini_server", _gemini_text, _sse(_gemini_pick)),
    "gemini parts text, several data: lines an event": ("gemini_server", _in_several_data_lines(_gemini_text), _sse(_gemini_pick)),
    "gemini parts text, JSON array stream": ("gemini_server", _gemini_array_text, _json_array(_gemini_pick)),
    "bedrock converse_stream": ("bedrock_server", _converse_text, _event_stream(lambda e: e["delta"]["text"], inner=False)),
    "bedrock invoke_model_with_response_stream": ("bedrock_server", _invoke_text, _event_stream(lambda e: e["delta"]["text"], inner=True)),
}


def _bodies(cassette: Path) -> list[bytes]:
    with sqlite3.connect(cassette) as db:
        return [body.encode() if isinstance(body, str) else body for (body,) in db.execute("SELECT body FROM interactions")]


@pytest.mark.parametrize("case", CASES)
def test_a_secret_streamed_a_few_characters_per_event_is_stored_and_replayed_as_its_placeholder(case, request, aws, tmp_path):
    fixture, call, stored_text = CASES[case]
    fake = request.getfixturevalue(fixture)
    aws.setenv(NAME, ANTHROPIC_KEY)
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        live = call(fake, _told(ANTHROPIC_KEY))
    assert live == ANSWER.format(ANTHROPIC_KEY) and recording.recorded >= 1, "the live answer streamed the key"

    raw = cassette.read_bytes()
    assert ANTHROPIC_KEY.encode() not in raw
    scrubbed = ANSWER.format(f"<scrubbed:{NAME}>")
    assert {stored_text(body) for body in _bodies(cassette)} == {scrubbed}, "the stream's pieces make up the scrubbed text"
    assert main(["audit", str(cassette)]) == 0

    fake.stop()
    aws.delenv(NAME)
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert call(fake, _told("unset")) == scrubbed
    assert replaying.replayed == recording.recorded


@pytest.mark.parametrize("size", [None, 5], ids=["whole in one chunk", "in pieces of 5"])
def test_aws_secrets_in_bedrock_base64_chunks_are_scrubbed_and_the_frames_still_pass_botocores_crcs(size, bedrock_server, aws, tmp_path):
    """invoke_model_with_response_stream: each frame's payload is ``{"bytes": <base64 of the model's JSON>}``."""
    aws.setenv("AWS_ACCESS_KEY_ID", bedrock_server.api_key)  # the SDK signs with these, as the tester's run did
    aws.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    aws.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)
    headers = {"x-fake-answer": f"your credentials: {AWS_SECRET} {AWS_TOKEN}", **({"x-fake-piece-size": str(size)} if size else {})}
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})

    def ask(client: Any) -> str:
        client.meta.events.register("before-sign.bedrock-runtime.*", lambda request, **_: [request.headers.__setitem__(*item) for item in headers.items()])
        answer = client.invoke_model_with_response_stream(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=body)
        return "".join(json.loads(e["chunk"]["bytes"])["delta"]["text"] for e in answer["body"] if b"text_delta" in e["chunk"]["bytes"])

    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert ask(_client("bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock_server.base_url)) == headers["x-fake-answer"]
    (stored,) = _bodies(cassette)
    decoded = b"".join(base64.b64decode(json.loads(message.payload)["bytes"]) for message in _crc_checked(stored))
    assert AWS_SECRET.encode() not in decoded and AWS_TOKEN.encode() not in decoded
    scrubbed = "your credentials: <scrubbed:AWS_SECRET_ACCESS_KEY> <scrubbed:AWS_SESSION_TOKEN>"
    assert _event_stream(lambda e: e["delta"]["text"], inner=True)(stored) == scrubbed
    assert main(["audit", str(cassette)]) == 0

    bedrock_server.stop()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        aws.delenv(name)
    with llm_replay.use_cassette(cassette, mode="replay"):
        client = _client("bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock_server.base_url,
                              aws_access_key_id="AKIDOTHER", aws_secret_access_key="other-secret")
        assert ask(client) == scrubbed


def test_a_secret_whole_in_a_converse_stream_payload_leaves_a_frame_botocore_still_reads(bedrock_server, aws, tmp_path):
    """Replaced in the raw bytes, the payload shrank under its frame's lengths and CRCs: botocore read nothing."""
    aws.setenv(NAME, ANTHROPIC_KEY)
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert _converse_text(bedrock_server, _told(ANTHROPIC_KEY, size=None)) == ANSWER.format(ANTHROPIC_KEY)  # a word per event
    (stored,) = _bodies(cassette)
    assert _event_stream(lambda e: e["delta"]["text"], inner=False)(stored) == ANSWER.format(f"<scrubbed:{NAME}>")
    bedrock_server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert _converse_text(bedrock_server, {}) == ANSWER.format(f"<scrubbed:{NAME}>")


def _crc_checked(body: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return list(buffer)


STREAM_APP = '''
import anthropic

def test_stream(llm_cache):
    client = anthropic.Anthropic(base_url="{base_url}", api_key="{api_key}", max_retries=0,
                                 default_headers={{"x-fake-answer": "{answer}", "x-fake-piece-size": "4"}})
    with client.messages.stream(model="claude-x", max_tokens=100, messages=[{{"role": "user", "content": "repeat my key"}}]) as stream:
        print("ANSWER", stream.get_final_text())
'''


def test_an_older_cassette_holding_a_streamed_key_fails_the_audit_and_scrub_leaves_its_placeholder(llm_pytester, anthropic_server, env, capsys):
    """Recorded before its value was a secret in the environment (as an older version stored any split key): the
    audit finds the key by its shape, scrub rewrites the events (the variable set, its placeholder), the replay says so."""
    llm_pytester.makepyfile(test_app=STREAM_APP.format(base_url=anthropic_server.base_url, api_key=anthropic_server.api_key, answer=ANSWER.format(ANTHROPIC_KEY)))
    llm_pytester.runpytest("-s", "--llm-mode=record").assert_outcomes(passed=1)
    cassette = llm_pytester.path / "cassettes" / "llm_cache.sqlite3"
    (body,) = _bodies(cassette)
    assert _sse(lambda e: e["delta"]["text"])(body) == ANSWER.format(ANTHROPIC_KEY) and ANTHROPIC_KEY.encode() not in body

    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    assert "column body, streamed text joined per field: Anthropic API key 'sk-ant…NmAA'" in capsys.readouterr().out, "by its shape"
    env.setenv(NAME, ANTHROPIC_KEY)
    assert main(["scrub", str(cassette)]) == 0
    assert main(["audit", str(cassette)]) == 0
    (body,) = _bodies(cassette)
    assert _sse(lambda e: e["delta"]["text"])(body) == ANSWER.format(f"<scrubbed:{NAME}>")

    anthropic_server.stop()
    env.delenv(NAME)
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "ANSWER") == [ANSWER.format(f"<scrubbed:{NAME}>")]


def test_an_older_cassette_holding_aws_secrets_in_base64_chunks_fails_the_audit_and_scrub_rebuilds_the_frames(bedrock_server, aws, tmp_path, capsys):
    """Recorded while the values were no secrets in the environment, as an older version stored them in any case: one
    answer holds them split over its chunks, the other whole in one chunk's base64."""
    cassette = tmp_path / "c.sqlite3"
    said = f"creds {AWS_SECRET} and {AWS_TOKEN}"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert _invoke_text(bedrock_server, {"x-fake-answer": said, "x-fake-piece-size": "7"}, "split") == said
        assert _invoke_text(bedrock_server, {"x-fake-answer": said}, "whole") == said  # a word per chunk
    assert AWS_SECRET.encode() not in cassette.read_bytes()
    aws.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    aws.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)

    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    out = capsys.readouterr().out
    assert "event stream payloads decoded: value of environment variable $AWS_SECRET_ACCESS_KEY" in out, out
    assert "streamed text joined per field: value of environment variable $AWS_SECRET_ACCESS_KEY" in out, out
    assert "streamed text joined per field: AWS session token 'IQoJb3…6M=='" in out, out
    assert main(["scrub", str(cassette)]) == 0
    scrubbed = "creds <scrubbed:AWS_SECRET_ACCESS_KEY> and <scrubbed:AWS_SESSION_TOKEN>"
    assert [_event_stream(lambda e: e["delta"]["text"], inner=True)(body) for body in _bodies(cassette)] == [scrubbed, scrubbed]  # CRCs checked

    bedrock_server.stop()
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    aws.delenv("AWS_SESSION_TOKEN")
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert [_invoke_text(bedrock_server, {}, prompt) for prompt in ("split", "whole")] == [scrubbed, scrubbed]


def test_an_older_cassette_holding_a_compressed_body_is_audited_decoded_and_scrubbed_into_a_decoded_body(server, env, tmp_path, capsys):
    """A body an earlier version stored still compressed (``identity, GZIP``), its Content-Encoding header kept."""
    cassette = tmp_path / "c.sqlite3"
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    ask = lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content  # noqa: E731
    with llm_replay.use_cassette(cassette, mode="record"):
        ask()
    (recorded,) = SQLiteCache(cassette, readonly=True).interactions()
    answer = json.loads(recorded.response.body)
    answer["choices"][0]["message"]["content"] = f"your key is {ANTHROPIC_KEY}"
    compressed = gzip.compress(json.dumps(answer).encode())
    headers = {**recorded.response.headers, "Content-Encoding": ["identity, GZIP"], "content-length": [str(len(compressed))]}
    old = SQLiteCache(cassette, scrubber=Scrubber(environ={}))
    old.put(replace(recorded, response=replace(recorded.response, headers=headers, body=compressed)))
    old.close()
    assert ANTHROPIC_KEY.encode() not in cassette.read_bytes()

    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    assert "column body, decoded from Content-Encoding 'identity, GZIP' (JSON, keys included): Anthropic API key 'sk-ant…NmAA'" in capsys.readouterr().out
    env.setenv(NAME, ANTHROPIC_KEY)
    assert main(["scrub", str(cassette)]) == 0
    (stored,) = SQLiteCache(cassette, readonly=True).interactions()
    assert {name.lower() for name in stored.response.headers} >= {"content-length"} and "content-encoding" not in {name.lower() for name in stored.response.headers}
    assert stored.response.headers["content-length"] == [str(len(stored.response.body))]
    assert json.loads(stored.response.body)["choices"][0]["message"]["content"] == f"your key is <scrubbed:{NAME}>"

    server.stop()
    env.delenv(NAME)
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert ask() == f"your key is <scrubbed:{NAME}>"


def test_a_body_stored_in_a_coding_nothing_here_decodes_is_reported_as_unread_and_left(tmp_path, capsys):
    cassette = tmp_path / "c.sqlite3"
    old = SQLiteCache(cassette, scrubber=Scrubber(environ={}))
    request = canonicalize("POST", "https://api.test/v1/chat", b"{}", "application/json")
    old.put(Interaction.of(request, RecordedResponse(200, "OK", {"Content-Encoding": ["x-unknown"]}, b"\x01\x02opaque")))
    old.put(Interaction.of(request, RecordedResponse(200, "OK", {"Content-Encoding": ["gzip"]}, b"not gzip at all"), occurrence=1))
    old.close()
    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    out = capsys.readouterr().out
    assert "response body stored still encoded, which the audit cannot read: a response is encoded 'x-unknown'" in out
    assert "a response says Content-Encoding 'gzip' but its body does not decode as that" in out
    assert main(["scrub", str(cassette)]) == 1, "left as it was, and said so"


def test_redis_cassette_streams_are_audited_and_scrubbed_too(redis_url, capsys):
    from llm_replay.stores.spec import open_store

    old = open_store(redis_url, scrubber=Scrubber(environ={}))
    request = canonicalize("POST", "https://api.anthropic.com/v1/messages", b'{"stream": true}', "application/json")
    pieces = [ANTHROPIC_KEY[at : at + 5] for at in range(0, len(ANTHROPIC_KEY), 5)]
    body = b"".join(b"event: content_block_delta\ndata: " + json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}).encode() + b"\n\n" for piece in pieces)
    old.put(Interaction.of(request, RecordedResponse(200, "OK", {"content-type": ["text/event-stream"]}, body)))
    old.close()
    capsys.readouterr()
    assert main(["audit", redis_url]) == 1
    assert "field body, streamed text joined per field: Anthropic API key" in capsys.readouterr().out
    assert main(["scrub", redis_url]) == 0
    store = open_store(redis_url, readonly=True)
    (stored,) = store.interactions()
    store.close()
    assert _sse(lambda e: e["delta"]["text"])(stored.response.body) == "<scrubbed>"


def test_the_stream_pass_costs_a_json_answer_nothing_and_a_stream_without_a_split_secret_no_parse(monkeypatch):
    """The usual answers never reach the stream code; a stream is parsed only when a piece ends with a secret's start."""
    from llm_replay.model.streamed_text import StreamedBody

    scrubber = Scrubber(environ={NAME: ANTHROPIC_KEY})
    parsed = []
    monkeypatch.setattr(StreamedBody, "of", classmethod(lambda cls, *args, **kwargs: parsed.append(args) or None))
    request = canonicalize("POST", "https://api.test/v1/chat", b"{}", "application/json")
    json_answer = json.dumps({"choices": [{"message": {"content": "a plain answer"}}]}).encode()
    stream = b"".join(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}).encode() + b"\n\n" for piece in ("Hello", " there", ", friend"))
    for body in (json_answer, stream):
        scrubber.interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, body)))
    assert parsed == []
    split = b"".join(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}).encode() + b"\n\n" for piece in ("key ", ANTHROPIC_KEY[:9], ANTHROPIC_KEY[9:]))
    scrubber.interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, split)))
    assert len(parsed) == 1


@pytest.mark.parametrize("value", ["Passwört/Geheim<2024>", ANTHROPIC_KEY], ids=["escaped by JSON", "longer than the search's nesting"])
def test_may_be_split_finds_every_cut_of_a_value_as_json_encoders_write_it_and_no_false_cut(value):
    from llm_replay.model.streamed_text import may_be_split

    forms = [form for form, _ in Scrubber(environ={"DB_PASSWORD": value}).env_secrets()]
    for cut in range(1, len(value)):
        for ascii_only in (True, False):  # ö as \u00f6, or as it is
            for pieces in ([value[:cut], value[cut:]], [value[:cut], value[cut], value[cut + 1 :]]):  # a piece of one character
                events = [json.dumps({"t": piece}, ensure_ascii=ascii_only) for piece in ["x " + pieces[0], *pieces[1:-1], pieces[-1] + " y"]]
                assert may_be_split("\n".join(events).encode(), forms), (cut, pieces)
    assert not may_be_split(json.dumps([value[:4], value[5:]]).encode(), forms), "a start must be followed by the rest"


def test_pieces_split_around_and_inside_several_secrets_and_two_choices_streamed_side_by_side_stay_apart():
    scrubber = Scrubber(environ={NAME: ANTHROPIC_KEY, "OTHER_TOKEN": "tok-1234567890"}, patterns=[r"corp-[0-9a-f]{16}"])
    text = f"a{ANTHROPIC_KEY}b tok-1234567890 corp-0123456789abcdef {ANTHROPIC_KEY}"
    pieces = [text[at : at + 3] for at in range(0, len(text), 3)]
    other = [f"choice one {piece}" for piece in ("x", "y")]  # choice 1 interleaved with choice 0
    events = []
    for at, piece in enumerate(pieces):
        events.append({"choices": [{"index": 0, "delta": {"content": piece}}]})
        if at < len(other):
            events.append({"choices": [{"index": 1, "delta": {"content": other[at]}}]})
    body = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"
    request = canonicalize("POST", "https://api.test/v1/chat", b"{}", "application/json")
    stored = scrubber.interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, body))).response.body
    joined = {0: "", 1: ""}
    for line in stored.decode().splitlines():
        if line.startswith("data: {"):
            choice = json.loads(line[6:])["choices"][0]
            joined[choice["index"]] += choice["delta"]["content"]
    assert joined == {0: f"a<scrubbed:{NAME}>b <scrubbed:OTHER_TOKEN> <scrubbed> <scrubbed:{NAME}>", 1: "".join(other)}
    assert stored.endswith(b"data: [DONE]\n\n")
    assert scrubber.interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, stored))).response.body == stored, "twice changes nothing"


def test_event_stream_frames_round_trip_byte_for_byte_and_a_body_that_is_not_one_is_left_to_the_byte_scrub():
    from fakes.bedrock_api import event_frame

    from llm_replay.model.event_stream import encoded, frames
    from llm_replay.model.streamed_text import looks_streamed

    body = event_frame("chunk", {"bytes": base64.b64encode(b'{"a": 1}').decode()}) + event_frame("metadata", {"usage": {"inputTokens": 1}})
    assert encoded(frames(body)) == body
    assert frames(body)[0].header(":event-type") == "chunk"
    assert frames(body[:-1]) is None and frames(b"\x00\x00\x00\x10" + b"\x00" * 12) is None
    scrubber = Scrubber(environ={NAME: ANTHROPIC_KEY})
    request = canonicalize("POST", "https://api.test/v1/chat", b"{}", "application/json")
    truncated = body[:-3] + f" {ANTHROPIC_KEY}".encode()
    assert ANTHROPIC_KEY.encode() not in scrubber.interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, truncated))).response.body
    assert looks_streamed(body) and not looks_streamed(b'{"data": 1}')


PASSWORD = "Tr0ub4dor-" + "horse-battery-staple"  # no variable holds it: a secret by where it stands
DSN = "postgres://admin:{}@db.internal:5432/app"


def _record_and_replay(call: Callable[[Any, dict[str, str]], str], fake: Any, headers: dict[str, str], cassette: Path) -> str:
    """What ``call`` answered live (recorded), after checking the replay answers the same once the fake is gone."""
    with llm_replay.use_cassette(cassette, mode="record"):
        live = call(fake, headers)
    fake.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        replayed = call(fake, headers)
    assert replaying.replayed == 1
    return f"{live} | {replayed}"


@pytest.mark.parametrize("name", ["api_key", "Client-Secret"])
@pytest.mark.parametrize("case", ARGUMENTS)
def test_a_secret_named_tool_argument_streamed_a_few_characters_per_event_is_stored_and_replayed_scrubbed(case, name, request, tmp_path):
    """The arguments' JSON is whole in no event, so no JSON body's rule by name saw ``{"api_key": "…"}``."""
    fixture, call, arguments = ARGUMENTS[case]
    headers = {"x-fake-answer": PASSWORD, "x-fake-piece-size": "3", "x-fake-argument": name}
    cassette = tmp_path / "c.sqlite3"
    assert _record_and_replay(call, request.getfixturevalue(fixture), headers, cassette) == f"{PASSWORD} | <scrubbed>"
    (body,) = _bodies(cassette)
    assert json.loads(arguments(body)) == {name: "<scrubbed>"}, "the pieces make up the scrubbed JSON"


@pytest.mark.parametrize("case", ["anthropic text_delta", "openai chat delta.content", "gemini parts text", "gemini parts text, JSON array stream", "bedrock converse_stream"])
def test_a_url_password_streamed_a_few_characters_per_event_is_stored_and_replayed_scrubbed(case, request, aws, tmp_path):
    fixture, call, stored_text = CASES[case]
    said = f"connect with {DSN.format(PASSWORD)} now"
    headers = {"x-fake-answer": said, "x-fake-piece-size": "3"}
    cassette = tmp_path / "c.sqlite3"
    scrubbed = f"connect with {DSN.format('<scrubbed>')} now"
    assert _record_and_replay(call, request.getfixturevalue(fixture), headers, cassette) == f"{said} | {scrubbed}"
    assert [stored_text(body) for body in _bodies(cassette)] == [scrubbed]


def _plant(cassette: Path, body: bytes) -> None:
    """The one recording's body replaced, as an older version stored it: no scrubber in the way."""
    with sqlite3.connect(cassette) as db:
        db.execute("UPDATE interactions SET body = ?", (body.decode(),))


OPENAI_KEY_SHAPE = "sk-" + "proj-" + "Qm7vR2kLp9XwZ4tYb8Nc" + "T3BlbkFJ" + "u0iK7oP2lM9nB4vC6xZ8"  # fake, in OpenAI's shape


@pytest.mark.parametrize(("said", "argument", "found", "scrubbed"), [
    (OPENAI_KEY_SHAPE, "api_key", "OpenAI API key", '{"api_key": "<scrubbed>"}'),
    (DSN.format(PASSWORD), "q", "Basic Auth Credentials", json.dumps({"q": DSN.format("<scrubbed>")})),
], ids=["secret-named argument", "URL password"])
def test_an_older_cassette_holding_a_streamed_named_secret_or_url_password_fails_the_audit_and_scrub_removes_it(said, argument, found, scrubbed, server, tmp_path, capsys):
    headers = {"x-fake-answer": said, "x-fake-piece-size": "3", "x-fake-argument": argument}
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        _chat_tool(server, headers)
    tools = [{"type": "function", "function": {"name": "note", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    raw = httpx.post(f"{server.base_url}/chat/completions", headers={"authorization": f"Bearer {server.api_key}", **headers},
                     json={"model": "gpt-4o-mini", "stream": True, "tools": tools, "messages": [{"role": "user", "content": "note my key"}]}).content
    _plant(cassette, raw)
    pieces = ARGUMENTS["openai chat tool_calls arguments"][2]
    assert json.loads(pieces(_bodies(cassette)[0])) == {argument: said}

    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    assert f"column body, streamed text joined per field (JSON, keys included): {found} '" in capsys.readouterr().out
    assert main(["scrub", str(cassette)]) == 0
    assert [pieces(body) for body in _bodies(cassette)] == [scrubbed]
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert _chat_tool(server, headers) == json.loads(scrubbed)[argument]


@pytest.mark.parametrize("case", ["gemini parts text, JSON array stream", "openai chat delta.content, several data: lines an event"])
def test_an_older_cassette_holding_a_key_split_over_a_json_array_or_multi_line_events_fails_the_audit_and_scrub_leaves_its_placeholder(case, request, env, tmp_path, capsys):
    """Recorded with no variable holding the key (scrubbed by nothing): the audit finds it by its shape in the joined text."""
    fixture, call, stored_text = CASES[case]
    fake = request.getfixturevalue(fixture)
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert call(fake, _told(ANTHROPIC_KEY)) == ANSWER.format(ANTHROPIC_KEY)
    capsys.readouterr()
    assert main(["audit", str(cassette)]) == 1
    assert "column body, streamed text joined per field: Anthropic API key 'sk-ant…NmAA'" in capsys.readouterr().out
    env.setenv(NAME, ANTHROPIC_KEY)
    assert main(["scrub", str(cassette)]) == 0
    assert [stored_text(body) for body in _bodies(cassette)] == [ANSWER.format(f"<scrubbed:{NAME}>")]
    fake.stop()
    env.delenv(NAME)
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert call(fake, {}) == ANSWER.format(f"<scrubbed:{NAME}>")
