"""What each test's LLM calls were, as plain data for the HTML report (and to travel from xdist workers).

Built only when ``--llm-report`` is given, once per test, from what its Recorder kept, and scrubbed by the
session's Scrubber as the cassette is: the Recorder keeps each live answer as it came, secrets and all.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, Sequence

from ..engine.drift import read_answer
from ..errors import CassetteError

if TYPE_CHECKING:
    from ..engine.drift import Drift
    from ..engine.recorder import Recorder
    from ..model.fingerprint import CanonicalRequest
    from ..model.interaction import Interaction, Key, RecordedResponse
    from ..model.scrub import Scrubber


def test_record(recorder: "Recorder") -> dict[str, Any]:
    """One test: its calls (replayed, adopted or recorded), its misses with their diff, and drift (refresh, verify);
    every text in it scrubbed by the Scrubber of the test's cassette."""
    scrubber = recorder.cassette.scrubber
    secrets = scrubber.env_secrets()
    stored = _as_stored(recorder)
    calls = []
    for interaction, how in zip(recorder.interactions, recorder.how):
        interaction = scrubber.interaction(stored.get(interaction.key, interaction))
        request = interaction.request
        input_tokens, output_tokens = interaction.usage()
        calls.append({
            "how": how,
            "endpoint": scrubber.text(request.endpoint, secrets),
            "model": _scrubbed(request.model, scrubber, secrets),
            "messages": _scrubbed(messages(request), scrubber, secrets),
            "answer": _scrubbed(answer(interaction.response), scrubber, secrets),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "latency_ms": interaction.latency_ms,
            "key": interaction.fingerprint[:12],
        })
    return {
        "test": scrubber.test_id(recorder.test_id or "-"),
        "mode": str(recorder.mode),
        "calls": calls,
        "misses": [scrubber.text(str(miss), secrets) for miss in recorder.misses],
        "drift": [drift_record(drift, scrubber, stored) for drift in recorder.drift],
    }


def _as_stored(recorder: "Recorder") -> dict["Key", "Interaction"]:
    """The recordings this test made, as its cassette holds them: scrubbed as they were stored, with the environment
    of that moment. A key the test set in the environment and a fixture unset is gone before this runs."""
    keys = [interaction.key for interaction, how in zip(recorder.interactions, recorder.how) if how == "recorded"]
    if not keys:
        return {}
    try:
        return {found.key: found for found in recorder.cassette.get_many(keys)}
    except CassetteError:
        return {}  # a server gone: the answers as they came, scrubbed now


def drift_record(drift: "Drift", scrubber: "Scrubber", stored: "dict[Key, Interaction]") -> dict[str, Any]:
    """A compared answer: the request, its drift classes, which mode compared it, the old answer beside the new
    (None when verify could not send it), scrubbed. A refresh's new answer is shown as ``stored`` holds it."""
    from ..model.fingerprint import CanonicalRequest

    secrets = scrubber.env_secrets()
    request = scrubber.request(CanonicalRequest.from_json(drift.request_json))
    new = stored[drift.key].response if drift.by == "refresh" and drift.key in stored else drift.new
    return {
        "endpoint": scrubber.text(request.endpoint, secrets),
        "model": _scrubbed(request.model, scrubber, secrets),
        "classes": list(drift.classes),
        "by": drift.by,
        "old": _scrubbed(answer(scrubber.response(drift.old)), scrubber, secrets),
        "new": _scrubbed(answer(scrubber.response(new)), scrubber, secrets) if new is not None else None,
    }


def _scrubbed(value: Any, scrubber: "Scrubber", secrets: Sequence[tuple[str, str]]) -> Any:
    """Every string in ``value`` through ``scrubber.text``: what the page shows is text read out of bodies (JSON
    unescaped), where the cassette's scrub of the raw body may not have seen a secret as written."""
    if isinstance(value, str):
        return scrubber.text(value, secrets)
    if isinstance(value, (list, tuple)):
        return type(value)(_scrubbed(item, scrubber, secrets) for item in value)
    if isinstance(value, dict):
        return {_scrubbed(key, scrubber, secrets): _scrubbed(item, scrubber, secrets) for key, item in value.items()}
    return value


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
