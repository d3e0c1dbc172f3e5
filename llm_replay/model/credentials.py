"""Which names carry credentials: query parameters, headers, settings fields, body fields, environment variables.

Pure name rules, shared by the canonical form (a secret query parameter never reaches a fingerprint)
and by the scrubber (nothing secret reaches a cassette).
"""

from __future__ import annotations

import re

SECRET_QUERY_PARAMS = frozenset({
    "key", "api_key", "apikey", "api-key", "access_token", "access-token", "refresh_token", "id_token", "token", "code",
    "signature", "sig", "client_secret", "client-secret", "password", "passwd", "auth",
    # presigned URLs (AWS SigV4, Google Cloud Storage V4)
    "x-amz-credential", "x-amz-security-token", "x-amz-signature", "x-amz-date", "x-goog-credential", "x-goog-signature",
    # gateways that take their credential in the query (Azure API Management, GitLab, token-in-URL proxies), and the
    # header names some clients copy there
    "subscription-key", "subscription_key", "api_token", "api-token", "auth_token", "auth-token", "private_token",
    "private-token", "access_key", "access-key", "secret", "x-api-key", "x-goog-api-key",
    "secret_access_key", "aws_secret_access_key", "session_token", "aws_session_token", "private_key", "client_assertion",
})
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie", "set-cookie",
    "openai-organization", "openai-project", "anthropic-organization-id", "x-amz-security-token",
})
# A header whose name has one of these words (``x-amz-security-token``, ``x-…-token``, ``x-client-secret``)
# carries a credential; ``x-ratelimit-remaining-tokens`` does not ("tokens", counted, are not a token). Compiled on
# first use (re keeps it): at import it cost every session ~1 M instructions, and a replay scrubs no header.
_SECRET_HEADER_WORDS = r"(?:^|[-_])(?:token|secret|password|passwd|credentials?|api[-_]?key|auth|authorization|cookie\d*|signature)(?:[-_]|$)"
# Fields of form and JSON bodies (OAuth token requests and answers, login forms) whose values are credentials.
SECRET_BODY_FIELDS = frozenset({
    "access_token", "refresh_token", "id_token", "client_secret", "password", "passwd", "api_key", "apikey",
    "secret_access_key", "aws_secret_access_key", "session_token", "aws_session_token", "private_key", "client_assertion",
})
# The body field names as the rules compare them (``squashed``), and the fewest of them every one contains
# (``awssessiontoken`` holds ``sessiontoken``): a text that holds none names no secret field in any spelling.
SECRET_NAME_WORDS = frozenset(name.replace("_", "") for name in SECRET_BODY_FIELDS)
SECRET_NAME_STEMS = tuple(sorted(word for word in SECRET_NAME_WORDS if not any(other != word and other in word for other in SECRET_NAME_WORDS)))
# Names of environment variables whose values are secret: *KEY*, *TOKEN*, *SECRET*, *PASSWORD*.
SECRET_ENV_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD")


def is_secret_query_param(name: str) -> bool:
    """Whether a query parameter carries a credential (Google's ``key=``, OAuth's ``access_token=``, AWS presigning,
    Azure API Management's ``subscription-key=``, any ``*_api_key=``), in any case, snake, kebab or camel
    (``accessToken=``)."""
    word = squashed(name)
    return word in _SECRET_QUERY_WORDS or word.endswith("apikey")


def is_secret_header(name: str) -> bool:
    """Whether a header carries a credential, by its name: the known ones, and any that says token, secret, password…"""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or re.search(_SECRET_HEADER_WORDS, lowered) is not None


_SECRET_QUERY_WORDS = frozenset(name.replace("-", "").replace("_", "") for name in SECRET_QUERY_PARAMS)


def squashed(name: str) -> str:
    """A name in the one spelling the rules compare: ``access_token``, ``access-token``, ``accessToken`` and
    ``AccessToken`` are all ``accesstoken``."""
    return name.lower().replace("-", "").replace("_", "")


def is_secret_body_field(name: str) -> bool:
    """Whether a form or JSON body field holds a credential (``access_token``, ``clientSecret``, ``password``), in any
    case, snake, kebab or camel."""
    word = squashed(name)
    return word in SECRET_NAME_WORDS or word.endswith("apikey")


def is_secret_field(name: str) -> bool:
    """Whether a settings field holds a credential (``api_key``, ``openai_api_key``, ``access_token``)."""
    lowered = name.lower().replace("-", "_")
    return lowered in {"key", "token", "secret"} or lowered.endswith(("api_key", "apikey", "access_token", "_secret", "password"))


def without_password(url: str) -> str:
    """A URL as it may be shown, logged or stored: its password removed (``redis://user:pw@host`` ->
    ``redis://user@host``; redis-py also takes one from the query, ``?password=pw``), everything else kept."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    query = "&".join(item for item in parts.query.split("&") if item.partition("=")[0] not in URL_PASSWORD_OPTIONS)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host)
    return urlunsplit(parts._replace(query=query))


# The query options redis-py reads a password from (the server's; a TLS key file's).
URL_PASSWORD_OPTIONS = ("password", "ssl_password")
