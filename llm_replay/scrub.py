"""Credentials out of everything a cassette stores."""

from __future__ import annotations

from typing import Mapping, Sequence

SECRET_QUERY_PARAMS = frozenset({"key", "api_key", "apikey", "api-key", "access_token", "token", "code", "signature", "sig"})
SECRET_RESPONSE_HEADERS = frozenset({"set-cookie", "openai-organization", "openai-project", "anthropic-organization-id"})


def is_secret_query_param(name: str) -> bool:
    """Whether a query parameter carries a credential (Google's ``key=``, OAuth's ``access_token=``)."""
    return name.lower() in SECRET_QUERY_PARAMS


def scrub_response_headers(headers: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The response headers minus cookies and account identifiers."""
    return {name: list(values) for name, values in headers.items() if name.lower() not in SECRET_RESPONSE_HEADERS}


def is_secret_field(name: str) -> bool:
    """Whether a settings field holds a credential (``api_key``, ``openai_api_key``, ``access_token``)."""
    lowered = name.lower().replace("-", "_")
    return lowered in {"key", "token", "secret"} or lowered.endswith(("api_key", "apikey", "access_token", "_secret", "password"))
