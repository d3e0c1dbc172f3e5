"""The fake server must satisfy the real openai SDK, or every replay test built on it proves nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_openai import FakeOpenAI

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    """One server for the module keeps the suite fast; `fresh` gives each test an empty log."""
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture(autouse=True)
def fresh(server: FakeOpenAI) -> None:
    server.reset()


@pytest.fixture
def client(server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)


def number(answer_id: str) -> int:
    """The server's request number, carried at the end of every id."""
    return int(answer_id.rsplit("-", 1)[-1].rsplit("_", 1)[-1])


def test_chat_plain(server: FakeOpenAI, client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hello there"}])
    second = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hello there"}])

    n = number(first.id)
    assert first.id == f"chatcmpl-fake-{n}" and second.id == f"chatcmpl-fake-{n + 1}"
    assert first.object == "chat.completion" and first.model == "gpt-x"
    assert first.choices[0].message.content == f"echo[0]: hello there #{n}"
    assert second.choices[0].message.content == f"echo[0]: hello there #{n + 1}"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None and first.usage.prompt_tokens == 2 and first.usage.total_tokens == 6
    logged = server.requests[0]
    assert (logged["method"], logged["path"], logged["query"]) == ("POST", "/v1/chat/completions", "")
    assert logged["headers"]["authorization"] == "Bearer sk-test-fake"
    assert logged["json"]["messages"] == [{"role": "user", "content": "hello there"}]
    assert json.loads(logged["body"]) == logged["json"]
    assert len(server.requests) == 2


def test_chat_n2_choices_differ(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}], n=2)

    n = number(answer.id)
    assert [c.index for c in answer.choices] == [0, 1]
    assert [c.message.content for c in answer.choices] == [f"echo[0]: hi #{n}", f"echo[1]: hi #{n}"]


def test_chat_tools_round_trip(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "weather in Oslo"}]
    first = client.chat.completions.create(model="gpt-x", messages=messages, tools=TOOLS)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"q": "weather in Oslo"}

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(model="gpt-x", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == f"echo[0]: tool result sunny #{number(second.id)}"


def test_chat_stream_sync_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    n = number(chunks[0].id)
    assert {c.id for c in chunks} == {f"chatcmpl-fake-{n}"}
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3 and "".join(pieces) == f"echo[0]: stream me #{n}"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


def test_chat_stream_async(server: FakeOpenAI) -> None:
    async def collect() -> tuple[str, str, int]:
        aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        async with aclient:
            stream = await aclient.chat.completions.create(
                model="gpt-x",
                messages=[{"role": "user", "content": "async hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        return chunks[0].id, text, usage.total_tokens if usage else -1

    answer_id, text, total = asyncio.run(collect())
    assert text == f"echo[0]: async hi #{number(answer_id)}"
    assert total == 6


def test_legacy_completions_n_and_best_of(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="gpt-instruct", prompt=["one", "two"], n=2, best_of=2)

    n = number(answer.id)
    assert answer.object == "text_completion" and answer.model == "gpt-instruct"
    assert [(c.index, c.text) for c in answer.choices] == [
        (0, f"echo[0]: one #{n}"),
        (1, f"echo[1]: one #{n}"),
        (2, f"echo[0]: two #{n}"),
        (3, f"echo[1]: two #{n}"),
    ]
    assert answer.usage is not None and answer.usage.prompt_tokens == 2


def test_embeddings_base64_default_matches_float(server: FakeOpenAI, client: openai.OpenAI) -> None:
    default = client.embeddings.create(model="emb", input=["alpha", "beta"])
    floats = client.embeddings.create(model="emb", input="alpha", encoding_format="float")

    assert server.requests[0]["json"]["encoding_format"] == "base64"
    assert [d.index for d in default.data] == [0, 1]
    vector = default.data[0].embedding
    assert len(vector) == 8 and vector == floats.data[0].embedding
    assert vector != default.data[1].embedding
    assert default.usage.prompt_tokens == 2


def test_embeddings_raw_base64_and_dimensions(client: openai.OpenAI) -> None:
    raw = client.embeddings.create(model="emb", input="alpha", encoding_format="base64", dimensions=4)
    encoded = raw.data[0].embedding

    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<4f", base64.b64decode(encoded)))
    floats = client.embeddings.create(model="emb", input="alpha", encoding_format="float", dimensions=4)
    assert decoded == floats.data[0].embedding


def test_responses_plain(client: openai.OpenAI) -> None:
    answer = client.responses.create(
        model="gpt-r", input=[{"role": "user", "content": [{"type": "input_text", "text": "ping"}]}]
    )

    n = number(answer.id)
    assert answer.id == f"resp_fake_{n}" and answer.object == "response" and answer.status == "completed"
    assert answer.output[0].type == "message"
    assert answer.output_text == f"echo: ping #{n}"
    assert answer.usage is not None and answer.usage.input_tokens == 1


def test_responses_stream_create(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-r", input="tell me", stream=True))

    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    final = events[-1].response
    assert len(deltas) >= 3 and "".join(deltas) == f"echo: tell me #{number(final.id)}"
    assert final.output_text == "".join(deltas)


def test_responses_stream_helper(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-r", input="helper") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert final.output_text == f"echo: helper #{number(final.id)}" == "".join(deltas)


def test_transcription_multipart(server: FakeOpenAI, client: openai.OpenAI) -> None:
    audio = b"RIFF\r\n\r\n--not-a-boundary\x00\xff"
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", audio, "audio/wav")
    )

    n = number(raw.headers["x-request-id"])
    assert raw.parse().text == f"transcribed {len(audio)} bytes a.wav #{n}"
    logged = server.requests[0]
    assert logged["json"] is None and audio in logged["body"]
    assert logged["headers"]["content-type"].startswith("multipart/form-data")


def test_wrong_key_is_rejected_and_logged(server: FakeOpenAI) -> None:
    bad = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key" and "sk-wrong" in caught.value.message
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-wrong"


def test_fail_next_429_then_success(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.fail_next(429, message="slow down")
    messages: list[Any] = [{"role": "user", "content": "again"}]

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-x", messages=messages)
    assert caught.value.message.endswith("slow down") and caught.value.response.headers["retry-after"] == "0"
    answer = client.chat.completions.create(model="gpt-x", messages=messages)
    assert answer.choices[0].message.content == f"echo[0]: again #{number(answer.id)}"
    assert len(server.requests) == 2


def test_sdk_retries_through_fail_next_and_is_told_not_to_wait(server: FakeOpenAI) -> None:
    retrying = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=2)
    server.fail_next(429, times=2)
    answer = retrying.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content == f"echo[0]: x #{number(answer.id)}"
    assert len(server.requests) == 3

    server.fail_next(429)
    with pytest.raises(openai.RateLimitError) as caught:
        openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0).chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.response.headers["retry-after-ms"] == "1", "the SDK honours retry-after-ms, so retries do not back off"


def test_error_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="error-400", messages=[{"role": "user", "content": "x"}])
    assert caught.value.message.endswith("bad request for test") and caught.value.type == "invalid_request_error"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="error-500", messages=[{"role": "user", "content": "x"}])


def test_unknown_path_is_404(server: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.list()
    assert "GET /v1/models" in caught.value.message
    assert server.requests[0]["method"] == "GET"


def test_gzip_only_on_request(server: FakeOpenAI, client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "zip"}]
    zipped = client.chat.completions.with_raw_response.create(
        model="gpt-x", messages=messages, extra_headers={"x-fake-gzip": "1"}
    )
    by_query = client.chat.completions.with_raw_response.create(
        model="gpt-x", messages=messages, extra_query={"fake_gzip": "1"}
    )
    plain = client.chat.completions.with_raw_response.create(model="gpt-x", messages=messages)

    assert zipped.headers["content-encoding"] == by_query.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.parse().choices[0].message.content.startswith("echo[0]: zip #")
    assert server.requests[1]["query"] == "fake_gzip=1"


def test_stop_refuses_connections() -> None:
    srv = FakeOpenAI().start()
    client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
    # The first call leaves a pooled keep-alive connection, which stop() must cut too.
    client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    port = int(srv.base_url.split(":")[2].split("/")[0])

    srv.stop()
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    assert len(srv.requests) == 1
