"""Which names carry credentials: query parameters, headers, settings fields, environment variables.

Pure name rules, shared by the canonical form (a secret query parameter never reaches a fingerprint)
and by the scrubber (nothing secret reaches a cassette).
"""

from __future__ import annotations

SECRET_QUERY_PARAMS = frozenset({
    "key", "api_key", "apikey", "api-key", "access_token", "token", "code", "signature", "sig",
    # AWS SigV4 in a presigned URL: the signature, the key id and session token, and the signing time
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-amz-date",
})
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie", "set-cookie",
    "openai-organization", "openai-project", "anthropic-organization-id", "x-amz-security-token",
})
# Names of environment variables whose values are secret: *KEY*, *TOKEN*, *SECRET*, *PASSWORD*.
SECRET_ENV_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD")


def is_secret_query_param(name: str) -> bool:
    """Whether a query parameter carries a credential (Google's ``key=``, OAuth's ``access_token=``)."""
    return name.lower() in SECRET_QUERY_PARAMS


def is_secret_field(name: str) -> bool:
    """Whether a settings field holds a credential (``api_key``, ``openai_api_key``, ``access_token``)."""
    lowered = name.lower().replace("-", "_")
    return lowered in {"key", "token", "secret"} or lowered.endswith(("api_key", "apikey", "access_token", "_secret", "password"))
