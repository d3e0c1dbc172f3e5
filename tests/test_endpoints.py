"""Every endpoint the issue names, through the real openai SDK: recorded live, then replayed with the server stopped."""

from __future__ import annotations

import asyncio
import os
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest

import llm_replay
from llm_replay.stores.sqlite import SQLiteCache

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"


def _sync(server, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0, **options)


def _async(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)


def _chat(client: openai.OpenAI, prompt: str = "Say hi", **extra: Any):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], **extra)


TOOLS = [{"type": "function", "function": {"name": "search", "description": "web search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def _tools_round_trip(client: openai.OpenAI) -> list[Any]:
    messages: list[Any] = [{"role": "user", "content": "weather in Paris"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    messages += [first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
    return [first.model_dump(), second.model_dump()]


def _chat_stream(client: openai.OpenAI) -> list[Any]:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}], stream=True, stream_options={"include_usage": True}
    )
    return [chunk.model_dump() for chunk in stream]


def _async_chat_stream(server) -> list[Any]:
    async def run() -> list[Any]:
        client = _async(server)
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "async stream"}], stream=True)
        return [chunk.model_dump() async for chunk in stream]

    return asyncio.run(run())


def _async_chat(server) -> Any:
    async def run() -> Any:
        first, second = await asyncio.gather(
            _async(server).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "async one"}]),
            _async(server).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "async two"}]),
        )
        return [first.model_dump(), second.model_dump()]

    return asyncio.run(run())


def _responses_stream(client: openai.OpenAI) -> Any:
    events = [event.model_dump() for event in client.responses.create(model="gpt-4.1-mini", input="stream a story", stream=True)]
    with client.responses.stream(model="gpt-4.1-mini", input="stream another") as stream:
        final = stream.get_final_response()
    return [events, final.output_text]


CASES: dict[str, Callable[[Any], Any]] = {
    "chat": lambda s: _chat(_sync(s)).model_dump(),
    "chat_n2": lambda s: _chat(_sync(s), "two answers", n=2).model_dump(),
    "chat_tools": lambda s: _tools_round_trip(_sync(s)),
    "chat_stream": lambda s: _chat_stream(_sync(s)),
    "chat_async": _async_chat,
    "chat_stream_async": _async_chat_stream,
    "legacy_completions_n2_best_of2": lambda s: _sync(s).completions.create(model="gpt-3.5-turbo-instruct", prompt="Tell me a joke", n=2, best_of=2).model_dump(),
    "embeddings": lambda s: _sync(s).embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"]).model_dump(),
    "responses": lambda s: _sync(s).responses.create(model="gpt-4.1-mini", input="Write one line").model_dump(),
    "responses_stream": lambda s: _responses_stream(_sync(s)),
    "transcription_multipart": lambda s: _sync(s).audio.transcriptions.create(model="whisper-1", file=("hello.wav", WAV, "audio/wav")).model_dump(),
    "legacy_httpx_client": lambda s: _chat(_sync(s, http_client=httpx.Client()), "through httpx").model_dump(),
}


@pytest.mark.parametrize("case", CASES)
def test_records_then_replays_offline(case: str, server, tmp_path: Path) -> None:
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        live = CASES[case](server)
    assert recording.recorded >= 1 and recording.replayed == 0
    asked = len(server.requests)
    assert asked == recording.recorded

    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        replayed = CASES[case](server)
    assert replayed == live
    assert replaying.replayed == recording.recorded and replaying.recorded == 0
    assert len(server.requests) == asked


def test_multipart_fingerprint_ignores_the_random_boundary(server, tmp_path: Path) -> None:
    cassette = tmp_path / "c.sqlite3"
    upload = lambda: _sync(server).audio.transcriptions.create(model="whisper-1", file=("hello.wav", WAV, "audio/wav"))  # noqa: E731
    with llm_replay.use_cassette(cassette, mode="record"):
        first = upload()
        second = upload()  # a new random boundary, the same form: a hit
    assert first == second
    assert len(server.requests) == 1


def test_errors_replay_as_errors_but_rate_limits_and_server_errors_are_never_recorded(server, tmp_path: Path) -> None:
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        with pytest.raises(openai.BadRequestError, match="bad request for test"):
            _sync(server).chat.completions.create(model="error-400", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError):
            _sync(server).chat.completions.create(model="error-429", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.InternalServerError):
            _sync(server).chat.completions.create(model="error-500", messages=[{"role": "user", "content": "x"}])
    assert recording.recorded == 1

    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        with pytest.raises(openai.BadRequestError, match="bad request for test"):
            _sync(server).chat.completions.create(model="error-400", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(llm_replay.CassetteMiss):
            _sync(server).chat.completions.create(model="error-429", messages=[{"role": "user", "content": "x"}])


def test_a_rate_limited_call_is_retried_live_and_the_success_recorded(server, tmp_path: Path) -> None:
    server.fail_next(429)
    with llm_replay.use_cassette(tmp_path / "c.sqlite3", mode="record") as recording:
        answer = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=1).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "retry me"}]
        )
    assert len(server.requests) == 2
    assert recording.recorded == 1
    assert recording.interactions[0].response.json()["id"] == answer.id


def test_compressed_answers_are_stored_decoded(server, tmp_path: Path) -> None:
    cassette = tmp_path / "c.sqlite3"
    client = _sync(server, default_headers={"x-fake-gzip": "1"})
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _chat(client, "compress me")
    with sqlite3.connect(cassette) as db:
        body, headers = db.execute("SELECT body, headers FROM interactions").fetchone()
    assert json.loads(body)["id"] == live.id, "the body is stored as readable JSON text, not gzip bytes"
    assert "content-encoding" not in {name.lower() for name in json.loads(headers)}
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert _chat(client, "compress me") == live


@pytest.mark.parametrize("encoding", ["GZIP", "identity, gzip", "deflate", "gzip, deflate"])
def test_an_answer_encoded_in_any_spelling_or_stack_is_stored_decoded_and_scrubbed(server, tmp_path: Path, monkeypatch, encoding) -> None:
    """HTTP codings are case-insensitive and may be stacked; httpx undoes them all. Stored still encoded, the echoed
    key was out of the scrub's and the audit's sight, and a replay handed it back."""
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    cassette = tmp_path / "c.sqlite3"
    client = _sync(server, default_headers={"x-fake-content-encoding": encoding})
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _chat(client, f"my key is {server.api_key}")
    assert server.api_key in live.choices[0].message.content, "the fake echoed the key, encoded as asked"
    with sqlite3.connect(cassette) as db:
        body, headers = db.execute("SELECT body, headers FROM interactions").fetchone()
    assert "<scrubbed:OPENAI_API_KEY>" in json.loads(body)["choices"][0]["message"]["content"]
    assert server.api_key.encode() not in cassette.read_bytes() and "content-encoding" not in {name.lower() for name in json.loads(headers)}
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert server.api_key not in _chat(client, f"my key is {server.api_key}").choices[0].message.content


def test_an_answer_in_a_coding_llm_replay_cannot_undo_is_not_stored(server, tmp_path: Path) -> None:
    cassette = tmp_path / "c.sqlite3"
    client = _sync(server, default_headers={"x-fake-content-encoding": "x-squeeze"})
    with pytest.raises(llm_replay.CassetteError, match="encoded 'x-squeeze', a Content-Encoding llm_replay does not know .*nothing was recorded"):
        with llm_replay.use_cassette(cassette, mode="record"):
            _chat(client, "squeeze me")
    assert not cassette.exists() or len(SQLiteCache(cassette, readonly=True)) == 0, "nothing was recorded"


def test_the_requests_library_is_intercepted_too(server, tmp_path: Path) -> None:
    requests = pytest.importorskip("requests")
    cassette = tmp_path / "c.sqlite3"
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "via requests"}]}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with llm_replay.use_cassette(cassette, mode="record"):
        live = requests.post(f"{server.base_url}/chat/completions", json=payload, headers=headers).json()
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert requests.post(f"{server.base_url}/chat/completions", json=payload, headers=headers).json() == live


def test_replay_without_any_api_key_in_the_environment(server, tmp_path: Path, env) -> None:
    cassette = tmp_path / "c.sqlite3"
    env.setenv("OPENAI_API_KEY", server.api_key)
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _chat(openai.OpenAI(base_url=server.base_url, max_retries=0))
    env.delenv("OPENAI_API_KEY")
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        assert _chat(openai.OpenAI(base_url=server.base_url)) == live
    with pytest.raises(openai.OpenAIError, match="api_key"):
        openai.OpenAI(base_url=server.base_url)  # the placeholder lives only as long as the replay


def test_a_nested_replay_gives_back_a_placeholder_removed_since_the_outer_one_began(server, tmp_path: Path, env) -> None:
    """A replaying session around a test that deletes the key and then replays itself (pytester under CI=true):
    the inner replay still constructs the client, and the outer placeholder is gone once both have ended."""
    cassette = tmp_path / "c.sqlite3"
    env.setenv("OPENAI_API_KEY", server.api_key)
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _chat(openai.OpenAI(base_url=server.base_url, max_retries=0))
    env.delenv("OPENAI_API_KEY")
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay"):
        del os.environ["OPENAI_API_KEY"]  # what the test's monkeypatch does inside the outer session
        with llm_replay.use_cassette(cassette, mode="replay"):
            assert _chat(openai.OpenAI(base_url=server.base_url)) == live
        assert os.environ["OPENAI_API_KEY"] == "llm-replay-placeholder-key", "the outer replay still holds it"
    assert "OPENAI_API_KEY" not in os.environ
