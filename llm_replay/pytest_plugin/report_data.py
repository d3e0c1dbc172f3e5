"""What each test's LLM calls were, as plain data for the HTML report (and to travel from xdist workers).

Built only when ``--llm-report`` is given, once per test, from what its Recorder kept.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from ..engine.drift import read_answer

if TYPE_CHECKING:
    from ..engine.drift import Drift
    from ..engine.recorder import Recorder
    from ..model.fingerprint import CanonicalRequest
    from ..model.interaction import RecordedResponse


def test_record(recorder: "Recorder") -> dict[str, Any]:
    """One test: its calls (replayed, adopted or recorded), its misses with their diff, and drift (refresh, verify)."""
    calls = []
    for interaction, how in zip(recorder.interactions, recorder.how):
        request = interaction.request
        input_tokens, output_tokens = interaction.usage()
        calls.append({
            "how": how,
            "endpoint": request.endpoint,
            "model": request.model,
            "messages": messages(request),
            "answer": answer(interaction.response),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "latency_ms": interaction.latency_ms,
            "key": interaction.fingerprint[:12],
        })
    return {
        "test": recorder.test_id or "-",
        "mode": str(recorder.mode),
        "calls": calls,
        "misses": [str(miss) for miss in recorder.misses],
        "drift": [drift_record(drift) for drift in recorder.drift],
    }


def drift_record(drift: "Drift") -> dict[str, Any]:
    """A compared answer: the request, its drift classes, which mode compared it, the old answer beside the new
    (None when verify could not send it)."""
    from ..model.fingerprint import CanonicalRequest

    request = CanonicalRequest.from_json(drift.request_json)
    new = answer(drift.new) if drift.new is not None else None
    return {"endpoint": request.endpoint, "model": request.model, "classes": list(drift.classes), "by": drift.by, "old": answer(drift.old), "new": new}


def answer(response: "RecordedResponse") -> dict[str, Any]:
    """What an answer says: status, text, tool calls and finish reason (any provider, whole or streamed)."""
    read = read_answer(response)
    text = _embeddings(response.json()) or (read.text if len(read.text) < 20_000 else read.text[:20_000] + " …")
    try:
        response.body.decode("utf-8")
    except UnicodeDecodeError:
        text = f"({len(response.body):,} bytes of binary data)"  # audio, files: nothing a person can read
    return {
        "status": read.status,
        "text": text,
        "tool_calls": [{"name": name, "arguments": arguments} for name, arguments in read.tool_calls],
        "finish_reason": read.finish_reason,
    }


def _embeddings(data: Any) -> str | None:
    """``2 embeddings of 1,536 dimensions`` for an OpenAI-style embeddings answer (its numbers say nothing to a reader)."""
    items = data.get("data") if isinstance(data, dict) else None
    if not items or not isinstance(items, list) or not all(isinstance(item, dict) and "embedding" in item for item in items):
        return None
    vector = items[0]["embedding"]
    try:
        size = len(vector) if isinstance(vector, list) else len(base64.b64decode(vector)) // 4  # base64: little-endian float32s
    except (TypeError, ValueError):
        return None
    return f"{len(items)} embedding{'s' if len(items) != 1 else ''} of {size:,} dimensions"


def messages(request: "CanonicalRequest") -> list[tuple[str, str]]:
    """The request's messages as (role, text): chat, Anthropic, Gemini, Responses, LangChain prompts, embeddings."""
    body = request.body
    if not isinstance(body, dict):
        return [("body", _text(body))] if body is not None else []
    found: list[tuple[str, str]] = []
    if isinstance(body.get("system"), (str, list)):
        found.append(("system", _text(body["system"])))
    for name in ("messages", "contents", "input", "prompt"):
        value = body.get(name)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        found += [(_role(item, name), _text(item)) for item in items]
    return found


def _role(item: Any, field: str) -> str:
    if isinstance(item, dict):
        kwargs = item.get("kwargs") if isinstance(item.get("kwargs"), dict) else {}
        return str(item.get("role") or kwargs.get("type") or item.get("type") or field)
    return field


def _text(item: Any) -> str:
    """The readable text of a message or part (content strings joined), else its JSON."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        kwargs = item.get("kwargs") if isinstance(item.get("kwargs"), dict) else {}
        content = item.get("content", item.get("text", kwargs.get("content", item.get("parts"))))
        if content is not None and content is not item:
            return _text(content)
    if isinstance(item, list) and all(isinstance(part, (str, dict)) for part in item):
        texts = [_text(part) for part in item]
        return "\n".join(texts)
    return json.dumps(item, ensure_ascii=False, sort_keys=True)
