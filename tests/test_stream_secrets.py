"""A secret a model streams back a few characters per event: never whole in one event, yet whole in what the SDK
hands the test. Real SDKs (anthropic, openai, google-genai) against the loopback fakes, which stream a text
the request asks for (``x-fake-answer``) in pieces of a few characters (``x-fake-piece-size``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import anthropic
import openai
import pytest
from conftest import printed
from google import genai
from google.genai import types

import llm_replay
from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber

ANTHROPIC_KEY = "sk-" + "ant-api03-Zx9Kq2Lm7Pv4Rt8Wn3Bc6Hj1Df5Gs0Ay2Eu7Io4Kp9Ml3Nb6Vc8Xz1Qw5Er7Ty2Ui4Op6As8Df0Gh3Jk5Lz7Xc9Vb1NmAA"  # fake
NAME = "TENANT_ADMIN_KEY"  # secret by its name (KEY); the SDKs' own keys are the fakes'
ANSWER = "The key you gave me is {} and nothing else."


def _told(secret: str, size: int | None = 3) -> dict[str, str]:
    """The headers that make a fake answer ``ANSWER`` with ``secret`` in it, streamed ``size`` characters per event."""
    return {"x-fake-answer": ANSWER.format(secret), **({"x-fake-piece-size": str(size)} if size else {})}


# Each case: the call through its SDK (the text the SDK joins), and the pieces of that text in one stored body,
# read with no help from llm_replay (SSE lines).
def _anthropic_text(fake: Any, headers: dict[str, str]) -> str:
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "repeat my key"}]) as stream:
        return stream.get_final_text()


def _anthropic_tool(fake: Any, headers: dict[str, str]) -> str:
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)
    tools = [{"name": "note", "description": "keep a note", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, tools=tools, messages=[{"role": "user", "content": "note my key"}]) as stream:
        return stream.get_final_message().content[0].input["city"]


def _openai(fake: Any, headers: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_headers=headers)


def _chat_text(fake: Any, headers: dict[str, str]) -> str:
    stream = _openai(fake, headers).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "repeat my key"}], stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def _chat_tool(fake: Any, headers: dict[str, str]) -> str:
    tools = [{"type": "function", "function": {"name": "note", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    with _openai(fake, headers).chat.completions.stream(model="gpt-4o-mini", tools=tools, messages=[{"role": "user", "content": "note my key"}]) as stream:
        return json.loads(stream.get_final_completion().choices[0].message.tool_calls[0].function.arguments)["q"]


def _responses_text(fake: Any, headers: dict[str, str]) -> str:
    stream = _openai(fake, headers).responses.create(model="gpt-4.1-mini", input="repeat my key", stream=True)
    deltas = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
    with _openai(fake, headers).responses.stream(model="gpt-4.1-mini", input="repeat my key again") as again:  # its final response
        assert again.get_final_response().output_text == deltas
    return deltas


def _gemini_text(fake: Any, headers: dict[str, str]) -> str:
    client = genai.Client(api_key=fake.api_key, http_options=types.HttpOptions(base_url=fake.base_url, headers=headers))
    return "".join(chunk.text or "" for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="repeat my key"))


def _sse(pick: Callable[[dict], Any]) -> Callable[[bytes], str]:
    def pieces(body: bytes) -> str:
        events = [json.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:") and line[5:].strip() != "[DONE]"]
        return "".join(piece for event in events if isinstance(piece := _picked(pick, event), str))
    return pieces


def _picked(pick: Callable[[dict], Any], event: dict) -> Any:
    try:
        return pick(event)
    except (KeyError, IndexError, TypeError):
        return None


def _field(pieces: Callable[[bytes], str], name: str) -> Callable[[bytes], str]:
    """A tool call's arguments, joined from their pieces: the JSON's ``name``."""
    return lambda body: json.loads(pieces(body))[name]


CASES: dict[str, tuple[str, Callable[[Any, dict[str, str]], str], Callable[[bytes], str]]] = {
    "anthropic text_delta": ("anthropic_server", _anthropic_text, _sse(lambda e: e["delta"]["text"])),
    "anthropic input_json_delta": ("anthropic_server", _anthropic_tool, _field(_sse(lambda e: e["delta"]["partial_json"]), "city")),
    "openai chat delta.content": ("server", _chat_text, _sse(lambda e: e["choices"][0]["delta"]["content"])),
    "openai chat tool_calls arguments": ("server", _chat_tool, _field(_sse(lambda e: e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]), "q")),
    "openai response.output_text.delta": ("server", _responses_text, _sse(lambda e: e["delta"] if e["type"] == "response.output_text.delta" else None)),
    "gemini parts text": ("gemini_server", _gemini_text, _sse(lambda e: e["candidates"][0]["content"]["parts"][0]["text"])),
}


def _bodies(cassette: Path) -> list[bytes]:
    with sqlite3.connect(cassette) as db:
        return [body.encode() if isinstance(body, str) else body for (body,) in db.execute("SELECT body FROM interactions")]


@pytest.mark.parametrize("case", CASES)
def test_a_secret_streamed_a_few_characters_per_event_is_stored_and_replayed_as_its_placeholder(case, request, env, tmp_path):
    fixture, call, stored_text = CASES[case]
    fake = request.getfixturevalue(fixture)
    env.setenv(NAME, ANTHROPIC_KEY)
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
    env.delenv(NAME)
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert call(fake, _told("unset")) == scrubbed
    assert replaying.replayed == recording.recorded


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
