"""What a secret looks like: detect-secrets' detectors (the pre-commit standard), plus the LLM-era shapes it lacks.

detect-secrets knows AWS access keys, GitHub, GitLab, Slack, Stripe, Twilio, SendGrid, JWTs, URL passwords…;
the shapes below are the ones it does not (Anthropic, OpenAI project keys, Google API keys and OAuth tokens,
Hugging Face, AWS session tokens, Azure AD client secrets, bearer tokens, whole private-key blocks). Its
keyword and entropy detectors are left out: on model output they flag every other sentence.
Only the ``llm-replay`` command needs it (``pip install 'llm_replay[audit]'``); nothing else imports this.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator

from ..errors import CommandError

_EDGE = r"[A-Za-z0-9_+/-]"  # a key is never a slice of a longer token (or of a base64 blob)
OWN_SHAPES: tuple[tuple[str, str], ...] = (
    ("Anthropic API key", r"sk-ant-[a-z]+\d*-[A-Za-z0-9_-]{20,}"),
    ("OpenAI API key", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("Google API key", r"AIza[0-9A-Za-z_-]{35}"),
    ("Google OAuth access token", r"ya29\.[0-9A-Za-z_-]{20,}"),
    ("Google OAuth refresh token", r"1//0[0-9A-Za-z_-]{30,}"),
    ("Hugging Face token", r"hf_[A-Za-z0-9]{30,}"),
    ("AWS access key id", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    ("AWS session token", r"(?:FwoGZXIvYXdzE|IQoJb3JpZ2lu)[A-Za-z0-9/+=]{40,}"),
    ("AWS secret access key", r"(?i:aws_?secret_?access_?key)[\"'\s:=]+[A-Za-z0-9/+]{40}"),
    ("Azure AD client secret", r"[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}"),
    ("GitHub token", r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("bearer token", r"(?i:bearer)\s+[A-Za-z0-9._~+/-]{16,}=*"),
    ("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.|\n){0,8000}?-----END [A-Z ]*PRIVATE KEY-----"),
)
_OWN = re.compile("|".join(f"(?<!{_EDGE})(?P<g{index}>{pattern})(?!{_EDGE})" for index, (_, pattern) in enumerate(OWN_SHAPES)))
# In raw pages a value follows its record header, whose bytes may read as letters ("o" is a 49-character text's type).
_OWN_RAW = re.compile("|".join(f"(?P<g{index}>{pattern})(?!{_EDGE})" for index, (_, pattern) in enumerate(OWN_SHAPES)))
# Values made up for tests and docs look like keys but are not: "Bearer test_openai_api_key", "sk-fake-…", our placeholders.
_PLACEHOLDER_WORDS = re.compile(r"(?i)test|fake|dummy|example|placeholder|redacted|scrubbed|xxxx|your[_-]")
_LEFT_OUT = frozenset({
    "KeywordDetector", "Base64HighEntropyString", "HexHighEntropyString",  # prose is full of "key" and random-looking ids
    "IPPublicDetector",  # an address is not a credential
    "ArtifactoryDetector",  # "AP…"/"AKC…" words in model output
    "PrivateKeyDetector",  # finds only the BEGIN line; the block shape above takes the whole key
})


@lru_cache(maxsize=1)
def _detectors() -> tuple[Any, ...]:
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:
        raise CommandError(
            "llm-replay audit and scrub recognise key shapes with detect-secrets, which is not installed: "
            "pip install 'llm_replay[audit]' (or pip install detect-secrets)"
        ) from None
    classes = get_mapping_from_secret_type_to_class().values()
    return tuple(cls() for cls in sorted(classes, key=lambda cls: cls.__name__) if cls.__name__ not in _LEFT_OUT)


def require_detectors() -> None:
    """Fail early, with the install command, when detect-secrets is missing."""
    _detectors()


def secret_shapes(text: str, raw: bool = False) -> Iterator[tuple[str, str]]:
    """(kind, value) of every key-shaped value in ``text`` (placeholders and made-up test keys left out);
    ``raw``: ``text`` is a file's bytes, where a key may touch the bytes before it."""
    for match in (_OWN_RAW if raw else _OWN).finditer(text):
        value = match.group(match.lastgroup or 0)
        if not _PLACEHOLDER_WORDS.search(value):
            yield OWN_SHAPES[int(match.lastgroup[1:])][0], value  # type: ignore[index]
    for detector in _detectors():
        for value in detector.analyze_string(text):
            if isinstance(value, str) and len(value) >= 8 and not _PLACEHOLDER_WORDS.search(value):
                yield detector.secret_type, value
