"""A secret-named field in JSON text carried inside a JSON string: a tool call's arguments (OpenAI's
``function.arguments``, Anthropic's streamed ``partial_json``, Bedrock's streamed ``toolUse.input``) arriving whole,
in one answer or one event, and echoed back in the next request of an agent loop. Real SDKs against the loopback
fakes where they can answer a tool call; Gemini's and Bedrock's answers built as the services write them and read
back through their SDKs' own parsers."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import anthropic
import openai
import pytest
from botocore.eventstream import EventStreamBuffer
from conftest import cassette_file, printed
from google.genai import types

import llm_replay
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber

PASSWORD = "Tr0ub4dor-" + "horse-battery-staple"  # no variable holds it, no key shape: a secret only by its field's name


def _told(name: str, stream_pieces: int | None = None) -> dict[str, str]:
    """The fake's tool call: argument ``name`` set to PASSWORD, streamed ``stream_pieces`` characters an event (else whole)."""
    return {"x-fake-answer": PASSWORD, "x-fake-argument": name, **({"x-fake-piece-size": str(stream_pieces)} if stream_pieces else {})}


_CHAT_TOOLS = [{"type": "function", "function": {"name": "note", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
_MESSAGES_TOOLS = [{"name": "note", "description": "keep a note", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]


def _chat(fake: Any, headers: dict[str, str], stream: bool) -> str:
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)
    messages = [{"role": "user", "content": "note my password"}]
    if stream:
        with client.chat.completions.stream(model="gpt-4o-mini", tools=_CHAT_TOOLS, messages=messages) as answer:
            arguments = answer.get_final_completion().choices[0].message.tool_calls[0].function.arguments
    else:
        arguments = client.chat.completions.create(model="gpt-4o-mini", tools=_CHAT_TOOLS, messages=messages).choices[0].message.tool_calls[0].function.arguments
    return json.loads(arguments)[headers["x-fake-argument"]]


def _messages(fake: Any, headers: dict[str, str], stream: bool) -> str:
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 100, "tools": _MESSAGES_TOOLS, "messages": [{"role": "user", "content": "note my password"}]}
    if stream:
        with client.messages.stream(**ask) as answer:
            block = answer.get_final_message().content[0]
    else:
        block = client.messages.create(**ask).content[0]
    return block.input[headers["x-fake-argument"]]


CALLS: dict[str, tuple[str, Callable[[Any, dict[str, str], bool], str], bool]] = {
    "openai chat, one answer": ("server", _chat, False),
    "openai chat, streamed whole in one event": ("server", _chat, True),
    "anthropic tool_use.input, one answer": ("anthropic_server", _messages, False),
    "anthropic input_json_delta, streamed whole in one event": ("anthropic_server", _messages, True),
}


@pytest.mark.parametrize("name", ["api_key", "Client-Secret"])
@pytest.mark.parametrize("case", CALLS)
def test_a_secret_named_tool_argument_arriving_whole_is_stored_and_replayed_scrubbed(case, name, request, tmp_path):
    fixture, call, stream = CALLS[case]
    fake = request.getfixturevalue(fixture)
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        assert call(fake, _told(name), stream) == PASSWORD, "the live answer carried it"
    assert recording.recorded == 1
    assert PASSWORD.encode() not in cassette.read_bytes()
    fake.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert call(fake, _told(name), stream) == "<scrubbed>"
    assert replaying.replayed == 1


def _agent_loop(fake: Any, headers: dict[str, str], stream: bool) -> str:
    """Two turns: the model calls the tool, the app sends its call back with the tool's result; the model's last word.
    The second request carries the first answer's arguments, so it holds whatever the first answer replayed."""
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "note my password"}]
    first = {"model": "gpt-4o-mini", "tools": _CHAT_TOOLS, "messages": messages, "extra_headers": headers}  # the echo after it
    if stream:
        with client.chat.completions.stream(**first) as answer:
            message = answer.get_final_completion().choices[0].message
    else:
        message = client.chat.completions.create(**first).choices[0].message
    call = message.tool_calls[0]
    messages += [message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "noted"}]
    return client.chat.completions.create(model="gpt-4o-mini", tools=_CHAT_TOOLS, messages=messages).choices[0].message.content


@pytest.mark.parametrize("pieces", [None, 3], ids=["arguments whole", "arguments streamed 3 characters an event"])
@pytest.mark.parametrize("stream", [False, True], ids=["one answer", "streamed"])
def test_an_agent_loop_sending_a_scrubbed_tool_call_back_replays(stream, pieces, server, tmp_path):
    """The first answer replays with ``{"api_key": "<scrubbed>"}``; the second request, keyed when recording with the
    password in it, must be keyed the same, or the replay misses."""
    if pieces and not stream:
        pytest.skip("a one-answer call has no pieces")
    headers = _told("api_key", pieces)
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        live = _agent_loop(server, headers, stream)
    assert recording.recorded == 2 and PASSWORD.encode() not in cassette.read_bytes()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _agent_loop(server, headers, stream) == live
    assert replaying.replayed == 2



def _sse_body(events: list[Any], separator: str = "\n\n") -> bytes:
    return "".join(f"data: {json.dumps(event)}{separator}" for event in events).encode()


def _sse_values(body: bytes) -> list[Any]:
    return [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: {")]


def _frames(body: bytes) -> list[Any]:
    """Each frame's JSON payload, read by botocore, which checks both CRCs of every frame."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [json.loads(message.payload) for message in buffer]


def _gemini_call(args: dict[str, str]) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "note", "args": args}}]}, "index": 0}]}


def _gemini_args(chunks: list[Any]) -> dict[str, Any]:
    (call,) = [call for chunk in chunks for call in types.GenerateContentResponse.model_validate(chunk).function_calls or ()]
    return call.args


def _converse_stream(pieces: list[str]) -> bytes:
    from fakes.bedrock_api import event_frame

    events = [("messageStart", {"role": "assistant"}), ("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "note"}}})]
    events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}) for piece in pieces]
    events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "tool_use"})]
    return b"".join(event_frame(name, payload) for name, payload in events)


def _converse_stream_input(body: bytes) -> dict[str, Any]:
    return json.loads("".join(p["delta"]["toolUse"]["input"] for p in _frames(body) if "toolUse" in p.get("delta", {})))


def _invoke_stream(pieces: list[str]) -> bytes:
    """invoke_model_with_response_stream of an Anthropic model's tool call: each Messages event as base64 in a chunk frame."""
    from fakes.bedrock_api import event_frame

    events = [{"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t1", "name": "note", "input": {}}}]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}} for piece in pieces]
    events.append({"type": "content_block_stop", "index": 0})
    return b"".join(event_frame("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()}) for event in events)


def _invoke_stream_input(body: bytes) -> dict[str, Any]:
    events = [json.loads(base64.b64decode(payload["bytes"])) for payload in _frames(body)]
    return json.loads("".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"))


def _in_pieces(text: str, size: int) -> list[str]:
    return [text[at : at + size] for at in range(0, len(text), size)]


_ARGUMENTS = json.dumps({"api_key": PASSWORD, "q": "keep"})
_SCRUBBED = {"api_key": "<scrubbed>", "q": "keep"}
# Each answer as its service writes it, and how its SDK (or the service's own format) reads the call's arguments back.
ANSWERS: dict[str, tuple[bytes, Callable[[bytes], dict[str, Any]]]] = {
    "gemini functionCall.args, one answer": (json.dumps(_gemini_call({"api_key": PASSWORD, "q": "keep"})).encode(), lambda body: _gemini_args([json.loads(body)])),
    "gemini functionCall.args, streamed": (_sse_body([_gemini_call({"api_key": PASSWORD, "q": "keep"})], "\r\n\r\n"), lambda body: _gemini_args(_sse_values(body))),
    "bedrock converse toolUse.input, one answer": (
        json.dumps({"output": {"message": {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "note", "input": {"api_key": PASSWORD, "q": "keep"}}}]}},
                    "stopReason": "tool_use"}).encode(),
        lambda body: json.loads(body)["output"]["message"]["content"][0]["toolUse"]["input"],
    ),
    "bedrock converse_stream toolUse.input, whole in one event": (_converse_stream([_ARGUMENTS]), _converse_stream_input),
    "bedrock converse_stream toolUse.input, 4 characters an event": (_converse_stream(_in_pieces(_ARGUMENTS, 4)), _converse_stream_input),
    "bedrock invoke_model_with_response_stream tool_use, whole in one chunk": (_invoke_stream([_ARGUMENTS]), _invoke_stream_input),
    "bedrock invoke_model_with_response_stream tool_use, 5 characters a chunk": (_invoke_stream(_in_pieces(_ARGUMENTS, 5)), _invoke_stream_input),
    "openai responses function_call.arguments, one answer": (
        json.dumps({"object": "response", "output": [{"type": "function_call", "call_id": "c1", "name": "note", "arguments": _ARGUMENTS}]}).encode(),
        lambda body: json.loads(json.loads(body)["output"][0]["arguments"]),
    ),
    "openai responses function_call_arguments.done, streamed": (
        _sse_body([{"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "fc1", "arguments": _ARGUMENTS}]),
        lambda body: json.loads(_sse_values(body)[0]["arguments"]),
    ),
}


@pytest.mark.parametrize("answer", ANSWERS)
def test_tool_call_arguments_as_gemini_bedrock_and_the_responses_api_write_them_are_stored_scrubbed(answer):
    body, arguments = ANSWERS[answer]
    assert arguments(body) == {"api_key": PASSWORD, "q": "keep"}
    request = canonicalize("POST", "https://api.test/v1/answer", b"{}", "application/json")
    stored = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, body))).response.body
    assert PASSWORD.encode() not in stored
    assert arguments(stored) == _SCRUBBED
    again = Scrubber(environ={}).interaction(Interaction.of(request, RecordedResponse(200, "OK", {}, stored))).response.body
    assert again == stored, "scrubbing twice changes nothing"


AGENT_APP = '''
import sys
sys.path.insert(0, {tests!r})
from test_embedded_json_secrets import _agent_loop, _told


class Fake:
    base_url, api_key = "{base_url}", "{api_key}"


def test_agent(llm_cache):
    print("ANSWER", _agent_loop(Fake, _told("api_key"), stream=False))
'''


def test_a_cassette_recorded_before_the_arguments_were_scrubbed_still_replays_in_ci(llm_pytester, server, env):
    """Recorded by an older llm_replay, the first answer's arguments and the second request's echo of them hold the
    password, and the second recording is keyed with it. Now the echo is keyed scrubbed: the old recording is found
    under its old key (the stored request, scrubbed as lookups are, has the new one) and replays."""
    llm_pytester.makepyfile(test_app=AGENT_APP.format(tests=str(Path(__file__).parent), base_url=server.base_url, api_key=server.api_key))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    cassette = cassette_file(llm_pytester)
    _as_an_older_version_stored_it(cassette)
    assert PASSWORD.encode() in cassette.read_bytes()

    server.stop()
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")


def _as_an_older_version_stored_it(cassette: Path) -> None:
    """The password put back where the scrub replaced it, and each recording keyed by its request as stored then."""
    from llm_replay.model.fingerprint import CanonicalRequest

    with sqlite3.connect(cassette) as db:
        rows = db.execute("SELECT fingerprint, occurrence, request, body FROM interactions").fetchall()
        for fingerprint, occurrence, request, body in rows:
            request = request.replace("<scrubbed>", PASSWORD)
            body = body.replace(b"<scrubbed>", PASSWORD.encode()) if isinstance(body, bytes) else body.replace("<scrubbed>", PASSWORD)
            new = CanonicalRequest.from_json(request).fingerprint
            db.execute("UPDATE interactions SET fingerprint = ?, request = ?, body = ? WHERE fingerprint = ? AND occurrence = ?",
                       (new, request, body, fingerprint, occurrence))
        changed = {fingerprint for fingerprint, *_ in rows} - {row[0] for row in db.execute("SELECT fingerprint FROM interactions")}
    assert len(changed) == 1, "the second request was keyed with the password"
