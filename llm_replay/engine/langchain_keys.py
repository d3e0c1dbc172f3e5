"""LangChain cache keys as canonical requests, so LangChain entries share the cassette, listings and miss diffs.

A LangChain cache is keyed by two strings: the prompt (a chat model's messages as LangChain JSON, or an
LLM's plain text) and the ``llm_string`` (the model's settings, as JSON and/or a Python repr). They are
stored parsed, so a reader sees fields, but only when re-rendering the parsed form gives back exactly the
original characters: two different keys never share a recording, unless they differ only in credentials. A model's
settings are kept as the HTTP layer keeps a request: no header value, no secret query parameter or secret-named field.
Pure Python: no LangChain import here.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from ..model.credentials import is_secret_body_field, is_secret_field, is_secret_header, is_secret_query_param
from ..model.fingerprint import CanonicalRequest, FieldDifference, short_json
from ..model.scrub import PATTERN_PLACEHOLDER

LANGCHAIN_METHOD = "LANGCHAIN"
LANGCHAIN_HOST = "langchain://"
LANGCHAIN_PATH = "/llm_cache"
# LangChain's chat models join the model's serialized JSON and the call's parameters with this.
_CHAT_SEPARATOR = "---"
_MODEL_FIELDS = ("model_name", "model", "model_id", "deployment_name")


def langchain_request(prompt: str, llm_string: str) -> CanonicalRequest:
    """The canonical request standing for one LangChain cache key."""
    settings = _parsed_llm_string(llm_string)
    body: dict[str, Any] = {"prompt": _parsed_prompt(prompt), "llm_string": settings}
    model = _model_of(settings)
    if model is not None:
        body["model"] = model  # derived from llm_string: fills the cassette's model column for listings
    return CanonicalRequest(method=LANGCHAIN_METHOD, host=LANGCHAIN_HOST, path=LANGCHAIN_PATH, body=body, body_kind="json")


def is_langchain_request(request: CanonicalRequest) -> bool:
    """Whether a canonical request is a LangChain cache key rather than an HTTP request."""
    return request.method == LANGCHAIN_METHOD and request.host == LANGCHAIN_HOST


def describe_llm(request: CanonicalRequest) -> str:
    """``ChatOpenAI, model gpt-4o-mini``: the model class (or LLM type) and model name a key names."""
    settings = request.body.get("llm_string") if isinstance(request.body, dict) else None
    kind = None
    if isinstance(settings, dict):
        serialized = settings.get("serialized")
        if isinstance(serialized, dict):
            kind = serialized.get("name") or (serialized.get("id") or [None])[-1]
        else:
            kind = settings.get("params", {}).get("_type")
    parts = [str(kind) if kind else "LangChain model"]
    if request.model:
        parts.append(f"model {request.model}")
    return ", ".join(parts)


def prompt_text(request: CanonicalRequest) -> str:
    """The last message of a chat prompt, ``(human) text``, or an LLM's prompt text."""
    prompt = request.body.get("prompt") if isinstance(request.body, dict) else None
    if isinstance(prompt, list) and prompt:
        last = prompt[-1]
        kwargs = last.get("kwargs", {}) if isinstance(last, dict) else {}
        content = kwargs.get("content", last)
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, sort_keys=True)
        return f"({kwargs.get('type', '?')}) {text}"
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def setting_label(difference: FieldDifference) -> str | None:
    """A canonical field path as a LangChain user knows it (``temperature``, ``prompt[0].content``), or
    None for fields derived from others."""
    path = difference.path
    for prefix in ("body.llm_string.serialized.kwargs.", "body.llm_string.serialized.", "body.llm_string.params."):
        if path.startswith(prefix):
            return path[len(prefix):]
    if path == "body.llm_string":
        return "llm_string"
    if path.startswith("body.prompt"):
        return "prompt" + path[len("body.prompt"):].replace(".kwargs.", ".")
    return None


def describe_setting_difference(difference: FieldDifference, width: int) -> str | None:
    """``temperature differs: 0.7 -> 0.2``, or None for a field not worth a line."""
    label = setting_label(difference)
    if label is None:
        return None
    if difference.only_requested:
        return f"{label} only in the request: {short_json(difference.requested, width)}"
    if difference.only_recorded:
        return f"{label} only in the recording: {short_json(difference.recorded, width)}"
    return f"{label} differs: {short_json(difference.recorded, width)} -> {short_json(difference.requested, width)}"


# -- parsing, exact or not at all -------------------------------------------------------------


def _parsed_prompt(prompt: str) -> Any:
    """A chat prompt's message list; anything else stays the text it is."""
    if prompt[:1] != "[":
        return prompt
    try:
        messages = json.loads(prompt)
    except ValueError:
        return prompt
    # LangChain's dumps() is json.dumps with default separators and key order kept.
    return messages if json.dumps(messages) == prompt else prompt


def _parsed_llm_string(llm_string: str) -> Any:
    """``{"serialized": ..., "params": ...}`` for a chat model, ``{"params": ...}`` for an LLM, else the text (a chat
    model's settings scrubbed in it even so: ``with_structured_output`` puts a class in the parameters)."""
    serialized, params_text = _chat_parts(llm_string)
    params = _parsed_params(params_text)
    if serialized is None:
        return llm_string if params is None else {"params": settings_without_credentials(params)}
    if params is None:
        return json.dumps(settings_without_credentials(serialized), sort_keys=True) + _CHAT_SEPARATOR + params_text
    return {"serialized": settings_without_credentials(serialized), "params": settings_without_credentials(params)}


def _chat_parts(llm_string: str) -> tuple[dict[str, Any] | None, str]:
    """A chat model's serialized settings and its parameters' text, split after the JSON object (``---`` may be in
    either part too); None and the whole text for an LLM's or an unknown ``llm_string``."""
    end = llm_string.find("}" + _CHAT_SEPARATOR)
    while end != -1:
        serialized = _parsed_serialized(llm_string[: end + 1])
        if serialized is not None:
            return serialized, llm_string[end + 1 + len(_CHAT_SEPARATOR):]
        end = llm_string.find("}" + _CHAT_SEPARATOR, end + 1)
    return None, llm_string


def _parsed_serialized(text: str) -> dict[str, Any] | None:
    """LangChain's ``json.dumps(model, sort_keys=True)`` back as a dict, when it renders back exactly."""
    try:
        serialized = json.loads(text)
    except ValueError:
        return None
    return serialized if isinstance(serialized, dict) and json.dumps(serialized, sort_keys=True) == text else None


def settings_without_credentials(settings: dict[str, Any]) -> dict[str, Any]:
    """A model's settings as the HTTP layer would key its requests: every header's value replaced (``default_headers``,
    ``extra_headers``: request headers never key a recording), and secret query parameters (``default_query``) and
    secret-named fields at any depth (``extra_body``, ``model_kwargs``), so any token gets the same recording."""
    return {name: _setting_without_credentials(name, value) for name, value in settings.items()}


def _setting_without_credentials(name: str, value: Any) -> Any:
    lowered = name.lower()
    if isinstance(value, dict):
        if lowered.endswith("headers"):
            return {header: PATTERN_PLACEHOLDER if isinstance(text, str) else text for header, text in value.items()}
        if lowered.endswith("query"):
            return {key: PATTERN_PLACEHOLDER if isinstance(text, str) and is_secret_query_param(key) else text for key, text in value.items()}
        return settings_without_credentials(value)
    if isinstance(value, list):
        return [settings_without_credentials(item) if isinstance(item, dict) else item for item in value]
    if isinstance(value, str) and (is_secret_field(name) or is_secret_body_field(name)):
        return PATTERN_PLACEHOLDER
    return value


def without_credential_headers(answer: Any) -> Any:
    """An answer's JSON without the response headers the HTTP layer drops (``set-cookie``, ``openai-organization``…),
    wherever a model copied them (ChatOpenAI's ``include_response_headers`` puts them in ``response_metadata``)."""
    if isinstance(answer, list):
        return [without_credential_headers(item) for item in answer]
    if not isinstance(answer, dict):
        return answer
    return {
        name: {header: text for header, text in value.items() if not is_secret_header(header)}
        if name.lower().endswith("headers") and isinstance(value, dict)
        else without_credential_headers(value)
        for name, value in answer.items()
    }


def _parsed_params(text: str) -> dict[str, Any] | None:
    """``str(sorted(params.items()))`` back as a dict, when it is made of JSON values and renders back exactly."""
    try:
        pairs = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(pairs, list) or not all(isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) for pair in pairs):
        return None
    params = dict(pairs)
    try:
        params = json.loads(json.dumps(params))  # tuples, sets or bytes would not survive storage: keep the text
    except (TypeError, ValueError):
        return None
    return params if str(sorted(params.items())) == text else None


def _model_of(settings: Any) -> str | None:
    if not isinstance(settings, dict):
        return None
    serialized = settings.get("serialized")
    for source in (serialized.get("kwargs") if isinstance(serialized, dict) else None, settings.get("params")):
        if isinstance(source, dict):
            for name in _MODEL_FIELDS:
                if isinstance(source.get(name), str):
                    return source[name]
    return None

