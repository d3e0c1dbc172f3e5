"""Drift classes: what changed between a recorded answer and a new one, for every provider format."""

from __future__ import annotations

import json

import pytest

from llm_replay.engine.drift import classify, read_answer
from llm_replay.engine.drift_classes import parse_drift_classes
from llm_replay.model.interaction import RecordedResponse


def _json(body: object, status: int = 200) -> RecordedResponse:
    return RecordedResponse(status, "OK", {"content-type": ["application/json"]}, json.dumps(body).encode())


def _sse(*events: object) -> RecordedResponse:
    text = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return RecordedResponse(200, "OK", {"content-type": ["text/event-stream"]}, text.encode())


def _chat(content: str | None = "Paris", finish: str = "stop", tool: tuple[str, str] | None = None, ident: str = "a") -> RecordedResponse:
    message: dict = {"role": "assistant", "content": content}
    if tool:
        message["tool_calls"] = [{"id": f"call_{ident}", "type": "function", "function": {"name": tool[0], "arguments": tool[1]}}]
    return _json({"id": f"chatcmpl-{ident}", "created": len(ident), "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                  "usage": {"prompt_tokens": len(ident), "completion_tokens": 1}})


def test_ids_timestamps_and_usage_are_not_drift():
    assert classify(_chat(ident="a"), _chat(ident="bbbb")) == ("identical",)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (_chat("Lyon"), ("text",)),
        (_chat("Paris", finish="length"), ("finish_reason",)),
        (_chat(None, finish="tool_calls", tool=("weather", '{"city": "Paris"}')), ("finish_reason", "tool_calls", "text")),
        (_json({"error": {"message": "rate limited"}}, status=429), ("status", "finish_reason", "text")),
    ],
)
def test_each_class_is_named(new, expected):
    assert classify(_chat("Paris"), new) == expected


def test_tool_call_arguments_compare_as_json_not_text():
    spaced = _chat(None, tool=("weather", '{"city": "Paris", "unit": "c"}'))
    compact = _chat(None, tool=("weather", '{"unit":"c","city":"Paris"}'))
    assert classify(spaced, compact) == ("identical",)
    assert classify(spaced, _chat(None, tool=("weather", '{"city": "Lyon", "unit": "c"}'))) == ("tool_calls",)


def test_structured_output_shape_versus_values():
    old = _chat(json.dumps({"city": "Paris", "population": 2100000, "tags": ["capital"]}))
    assert classify(old, _chat(json.dumps({"city": "Lyon", "population": 500000, "tags": ["big"]}))) == ("text",)
    assert classify(old, _chat(json.dumps({"city": "Paris", "population": "2.1M", "tags": ["capital"]}))) == ("shape",)
    assert classify(old, _chat(json.dumps({"city": "Paris", "tags": ["capital"]}))) == ("shape",)


def test_a_stream_reads_the_same_as_the_whole_answer():
    chunks = [{"id": "c", "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]} for part in ("Pa", "ris")]
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert read_answer(_sse(*chunks)) == read_answer(_chat("Paris"))
    tool_chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"city":'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}, "finish_reason": "tool_calls"}]},
    ]
    assert read_answer(_sse(*tool_chunks)).tool_calls == (("weather", {"city": "Paris"}),)


def test_anthropic_whole_and_streamed():
    whole = _json({"type": "message", "id": "msg_1", "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t", "name": "calc", "input": {"x": 1}}],
                   "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}})
    streamed = _sse(
        {"type": "message_start", "message": {"id": "msg_2", "content": [], "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "calc", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"x": 1}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    )
    assert read_answer(whole) == read_answer(streamed)
    assert read_answer(whole).tool_calls == (("calc", {"x": 1}),) and read_answer(whole).finish_reason == "tool_use"


def test_responses_gemini_and_bedrock_answers_are_read():
    responses = _json({"object": "response", "status": "completed", "output": [
        {"type": "message", "content": [{"type": "output_text", "text": "Hello"}]},
        {"type": "function_call", "name": "lookup", "arguments": '{"q": "x"}'},
    ]})
    assert read_answer(responses) == read_answer(_sse({"type": "response.output_text.delta", "delta": "Hel"},
                                                       {"type": "response.completed", "response": json.loads(responses.body)}))
    assert read_answer(responses).tool_calls == (("lookup", {"q": "x"}),)
    gemini = _sse({"candidates": [{"content": {"parts": [{"text": "Bon"}]}}]}, {"candidates": [{"content": {"parts": [{"text": "jour"}]}, "finishReason": "STOP"}]})
    assert (read_answer(gemini).text, read_answer(gemini).finish_reason) == ("Bonjour", "STOP")
    bedrock = _json({"output": {"message": {"role": "assistant", "content": [{"text": "Hey"}]}}, "stopReason": "end_turn", "usage": {}})
    assert (read_answer(bedrock).text, read_answer(bedrock).finish_reason) == ("Hey", "end_turn")


def test_an_unknown_body_compares_as_text():
    plain = RecordedResponse(200, "OK", {}, b"just text")
    assert classify(plain, RecordedResponse(200, "OK", {}, b"just text")) == ("identical",)
    assert classify(plain, RecordedResponse(200, "OK", {}, b"other text")) == ("text",)


def test_fail_on_drift_names_are_checked():
    assert parse_drift_classes("text, tool_calls", "--llm-fail-on-drift") == {"text", "tool_calls"}
    with pytest.raises(ValueError, match="--llm-fail-on-drift: unknown drift class 'txt'; use any of: status, finish_reason"):
        parse_drift_classes("txt", "--llm-fail-on-drift")
