"""Anthropic's Messages API on loopback: ``POST /v1/messages`` (also ``?beta=true``), JSON or SSE, tool use.

The key goes in ``x-api-key`` (newer SDKs send ``Authorization: Bearer``; both are checked). With tools offered and no tool result yet in the conversation, the answer is a
``tool_use`` of the first tool; otherwise text naming the request number and the last user text.
"""

from __future__ import annotations

import json
from typing import Any

from .server import ProviderFake, Reply, Request, Said, error, sse, words


class FakeAnthropic(ProviderFake):
    api_key = "sk-ant-test-fake"

    def answer(self, request: Request, n: int) -> Reply:
        if self.api_key not in (request.headers.get("x-api-key"), request.headers.get("authorization", "").removeprefix("Bearer ")):
            return error(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        if (request.method, request.path) != ("POST", "/v1/messages"):
            return error(404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {request.path}"}})
        body = request.json
        said = Said.of(request.headers)
        message = _message(body, n, said)
        if not body.get("stream"):
            return Reply(json=message, headers={"request-id": f"req_fake_{n}"})
        return Reply(chunks=sse(_events(message, said), said=said), content_type="text/event-stream; charset=utf-8")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(block.get("text") or json.dumps(block.get("content")) for block in content)


def _message(body: dict[str, Any], n: int, said: Said = Said()) -> dict[str, Any]:
    messages = body["messages"]
    answered = any(isinstance(m["content"], list) and any(b.get("type") == "tool_result" for b in m["content"]) for m in messages)
    if body.get("tools") and not answered:
        tool = body["tools"][0]
        content = [{"type": "tool_use", "id": f"toolu_fake_{n}", "name": tool["name"], "input": {said.argument or "city": said.text or "Paris"}}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": f"answer #{n} to: {_last_user_text(messages)}" if said.text is None else said.text}]
        stop = "end_turn"
    return {
        "id": f"msg_fake_{n}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10 + n, "output_tokens": 5},
    }


def _events(message: dict[str, Any], said: Said = Said()) -> list[tuple[str, Any]]:
    """The message as Anthropic streams it: start, one block at a time in deltas, delta, stop."""
    head = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}}
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": head})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            start, deltas = {"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in said.pieces(block["text"], words)]
        else:
            start = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in said.pieces(json.dumps(block["input"]), lambda whole: [whole])]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}) for delta in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": message["usage"]["output_tokens"]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events
