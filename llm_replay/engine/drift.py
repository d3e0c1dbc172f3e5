"""How a new answer differs from a recorded one, in classes a person cares about.

Shared by refresh's drift report, ``--llm-mode=verify``, ``llm-replay diff`` and ``--llm-fail-on-drift``.
An answer is read the same way for every provider format, whole JSON or streamed (SSE): its text,
its tool calls, its finish reason and its HTTP status. Ids, timestamps and token counts never count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..model.interaction import Key, RecordedResponse, sse_events
from .drift_classes import DRIFT_CLASSES, IDENTICAL


@dataclass(frozen=True)
class Answer:
    """What an answer says, stripped of ids, timestamps and usage."""

    status: int
    text: str
    tool_calls: tuple[tuple[str, Any], ...]
    finish_reason: str | None


def read_answer(response: RecordedResponse) -> Answer:
    """The answer in ``response``: chat completions, Responses, Anthropic, Gemini or Bedrock converse,
    whole or streamed; a body in no known format is its text."""
    data = response.json()
    events = [data] if data is not None else list(sse_events(response.body))
    texts: list[str] = []
    calls: dict[Any, list[Any]] = {}  # tool-call slot -> [name, argument text or value]
    finish: str | None = None
    known = False
    for event in events:
        for found in (_openai_chat(event), _responses(event), _anthropic(event), _gemini(event), _bedrock(event)):
            if found is None:
                continue
            known = True
            text, tool_parts, reason = found
            texts.extend(text)
            for slot, name, arguments in tool_parts:
                entry = calls.setdefault(slot, [None, ""])
                entry[0] = entry[0] or name
                entry[1] = arguments if not isinstance(arguments, str) or not isinstance(entry[1], str) else entry[1] + arguments
            finish = reason or finish
    if not known:
        return Answer(response.status, response.body.decode("utf-8", "replace"), (), None)
    tool_calls = tuple((name or "", _parsed(arguments)) for name, arguments in calls.values())
    return Answer(response.status, "".join(texts), tool_calls, finish)


def classify(recorded: RecordedResponse, new: RecordedResponse) -> tuple[str, ...]:
    """Every drift class that applies, most severe first; ``("identical",)`` when the answers agree."""
    old_answer, new_answer = read_answer(recorded), read_answer(new)
    found = []
    if old_answer.status != new_answer.status:
        found.append("status")
    if old_answer.finish_reason != new_answer.finish_reason:
        found.append("finish_reason")
    if old_answer.tool_calls != new_answer.tool_calls:
        found.append("tool_calls")
    if old_answer.text != new_answer.text:
        old_json, new_json = _parsed(old_answer.text), _parsed(new_answer.text)
        structured = not isinstance(old_json, str) and not isinstance(new_json, str)
        found.append("shape" if structured and _shape(old_json) != _shape(new_json) else "text")
    return tuple(found) or (IDENTICAL,)


def _parsed(text: Any) -> Any:
    """JSON text as its value (tool arguments, structured output), anything else unchanged."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shape(value: Any) -> Any:
    """The keys and types of a JSON value, without its values (lists by the shapes they hold)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(_shape(item), sort_keys=True) for item in value})
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


Found = tuple[list[str], list[tuple[Any, str | None, Any]], str | None]  # texts, tool-call parts, finish reason


def _openai_chat(event: Any) -> Found | None:
    """Chat completions, whole (``message``) or streamed (``delta``); legacy completions (``text``)."""
    if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
        return None
    texts, calls, finish = [], [], None
    for choice in event["choices"]:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        if isinstance(choice.get("text"), str):
            texts.append(choice["text"])
        for position, call in enumerate(message.get("tool_calls") or [] if isinstance(message, dict) else []):
            function = call.get("function") or {}
            slot = (choice.get("index", 0), call.get("index", position))
            calls.append((slot, function.get("name"), function.get("arguments") or ""))
        finish = choice.get("finish_reason") or finish
    return texts, calls, finish


def _responses(event: Any) -> Found | None:
    """The Responses API: a whole response, or the stream's ``response.completed`` event (deltas repeat it)."""
    if not isinstance(event, dict):
        return None
    response = event.get("response") if event.get("type") == "response.completed" else event if event.get("object") == "response" else None
    if not isinstance(response, dict):
        return ([], [], None) if str(event.get("type", "")).startswith("response.") else None
    texts, calls = [], []
    for position, item in enumerate(response.get("output") or []):
        if item.get("type") == "message":
            texts.extend(part.get("text", "") for part in item.get("content") or [] if isinstance(part, dict))
        elif item.get("type") == "function_call":
            calls.append((position, item.get("name"), item.get("arguments") or ""))
    details = response.get("incomplete_details") or {}
    return texts, calls, details.get("reason") or response.get("status")


def _anthropic(event: Any) -> Found | None:
    """Anthropic messages, whole or streamed (content_block_* and message_delta events)."""
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if kind == "message" and isinstance(event.get("content"), list):
        texts, calls = [], []
        for position, block in enumerate(event["content"]):
            if block.get("type") == "text":
                texts.append(block.get("text", ""))
            elif block.get("type") == "tool_use":
                calls.append((position, block.get("name"), block.get("input")))
        return texts, calls, event.get("stop_reason")
    if kind == "content_block_start":
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            return [], [(event.get("index"), block.get("name"), "")], None
        return [block.get("text", "")] if block.get("type") == "text" else [], [], None
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "input_json_delta":
            return [], [(event.get("index"), None, delta.get("partial_json", ""))], None
        return [delta.get("text", "")], [], None
    if kind == "message_delta":
        return [], [], (event.get("delta") or {}).get("stop_reason")
    if kind in ("message_start", "content_block_stop", "message_stop", "ping"):
        return [], [], None
    return None


def _gemini(event: Any) -> Found | None:
    """Gemini ``generateContent``, whole or each streamed chunk."""
    if not isinstance(event, dict) or not isinstance(event.get("candidates"), list):
        return None
    texts, calls, finish = [], [], None
    for candidate in event["candidates"]:
        for part in (candidate.get("content") or {}).get("parts") or []:
            if "text" in part and not part.get("thought"):
                texts.append(part["text"])
            if "functionCall" in part:
                call = part["functionCall"]
                calls.append((object(), call.get("name"), call.get("args")))  # whole calls: each its own slot
        finish = candidate.get("finishReason") or finish
    return texts, calls, finish


def _bedrock(event: Any) -> Found | None:
    """Bedrock ``converse`` (whole JSON; its binary event stream is compared as bytes)."""
    output = event.get("output") if isinstance(event, dict) else None
    if not isinstance(output, dict) or not isinstance(output.get("message"), dict):
        return None
    texts, calls = [], []
    for position, block in enumerate(event["output"]["message"].get("content") or []):
        if "text" in block:
            texts.append(block["text"])
        if "toolUse" in block:
            calls.append((position, block["toolUse"].get("name"), block["toolUse"].get("input")))
    return texts, calls, event.get("stopReason")


@dataclass(frozen=True)
class Drift:
    """One answer compared: the key, the classes it drifted by (``("identical",)`` if none), old and new,
    and ``by`` which mode compared them (refresh re-recorded it; verify only asked live). ``new`` is None
    when verify could not send the request (counted as a status change)."""

    key: Key
    request_json: str
    classes: tuple[str, ...]
    old: RecordedResponse
    new: RecordedResponse | None
    by: str = "refresh"

    @classmethod
    def between(cls, key: Key, request_json: str, old: RecordedResponse, new: RecordedResponse | None, by: str = "refresh") -> "Drift":
        """Compare a recorded answer with a new one for the same request."""
        return cls(key, request_json, ("status",) if new is None else classify(old, new), old, new, by)
