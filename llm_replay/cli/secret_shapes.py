"""What a secret looks like: detect-secrets' detectors (the pre-commit standard), plus the LLM-era shapes it lacks.

detect-secrets knows AWS access keys, GitHub, GitLab, Slack, Stripe, Twilio, SendGrid, JWTs, URL passwords…;
the shapes below are the ones it does not (Anthropic, OpenAI project keys, Google API keys and OAuth tokens,
Hugging Face, AWS session tokens, Azure AD client secrets, signed URLs' signatures, bearer tokens, whole private-key
blocks). Its
keyword and entropy detectors are left out: on model output they flag every other sentence.
Only the ``llm-replay`` command needs it (``pip install detect-secrets``); nothing else imports this.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator

from ..errors import CommandError

# Where a key may start: not right after a letter or digit (it would be the middle of a word, a hash, a base64 blob),
# unless that letter or digit ends an escape: JSON's ``\n`` and ``\u003c``, Python's ``\x3c`` and ``\U0001f511``, a URL's
# ``%22``.
# A "-", "_" or "+" before a key is an edge: pytest joins parametrize values with "-" ("AIza…-gemini-2.5-flash").
_AFTER_ESCAPE = r"(?<=\\[nrtbf])|(?<=\\u[0-9A-Fa-f]{4})|(?<=\\U[0-9A-Fa-f]{8})|(?<=\\x[0-9A-Fa-f]{2})|(?<=%[0-9A-Fa-f]{2})"
_START = rf"(?:(?<![A-Za-z0-9])|{_AFTER_ESCAPE})"
# A shape's looser form (a prefix and a run of key characters, no fixed length) is not taken right after "-" or "_":
# base64url (an OpenAI reasoning item's encrypted_content) holds "-sk-" or "_hf_" and a long run every few MB.
_LOOSE_START = rf"(?:(?<![A-Za-z0-9_-])|{_AFTER_ESCAPE})"
# Where a key ends: its fixed length, or the end of its run of key characters; a letter or digit right after makes it a
# slice of a longer token. "-", "_", "+" after it are edges (a fixed-length key ends before them, exactly).
_END = r"(?![A-Za-z0-9])"


class Shape:
    """One key shape, tried only where one of its literal anchors occurs (``str.find`` runs at memory speed;
    a regular expression tried at every position of a large cassette does not)."""

    def __init__(self, kind: str, pattern: str, anchors: tuple[str, ...], back: int = 0, fold: bool = False, loose: str = "") -> None:
        self.kind = kind
        self.anchors = anchors  # lower-case when ``fold``: searched in the lower-cased text
        self.back = back  # how far before the anchor the key starts
        self.fold = fold
        # the provider's format (tried first) at any edge; then ``loose``, a looser form, where no "-"/"_" joins it on the left.
        # Raw bytes have no start edge (a record header's byte may be a letter), but the looser form's "-"/"_" rule holds.
        self.pattern = re.compile(f"{_START}(?:{pattern}){_END}" + (f"|{_LOOSE_START}(?:{loose}){_END}" if loose else ""))
        self.raw_pattern = re.compile(f"(?:{pattern}){_END}" + (f"|(?<![_-])(?:{loose}){_END}" if loose else ""))

    def values(self, text: str, lowered: str, raw: bool) -> Iterator[str]:
        """Each key of this shape in ``text`` (``raw``: bytes read as text, where a key may touch what precedes it)."""
        pattern, haystack = (self.raw_pattern if raw else self.pattern), (lowered if self.fold else text)
        for anchor in self.anchors:
            end = -1  # an occurrence inside this anchor's last match is part of it; another anchor's may come before it
            start = haystack.find(anchor)
            while start >= 0:
                match = pattern.match(text, max(start - self.back, 0)) if start - self.back > end else None
                if match:
                    end = match.end()
                    yield match.group("value") if "value" in pattern.groupindex else match.group(0)
                start = haystack.find(anchor, start + 1)


_B64URL = "[A-Za-z0-9_-]"
# OpenAI's keys (sk-proj-, sk-svcacct-, sk-admin-, sk-None-, a legacy project's name, or none): two random halves of
# 74, 58 or 20 characters around "T3BlbkFJ" ("OpenAI" in base64)
_OPENAI_HALVES = "|".join(f"{_B64URL}{{{n}}}T3BlbkFJ{_B64URL}{{{n}}}" for n in (74, 58, 20))
OWN_SHAPES: tuple[Shape, ...] = (
    # sk-ant-api03-, sk-ant-admin01-: 93 characters and "AA"
    Shape("Anthropic API key", rf"sk-ant-[a-z]+\d\d-{_B64URL}{{93}}AA|sk-ant-[a-z]+\d*-{_B64URL}{{20,}}", ("sk-ant-",)),
    Shape("OpenAI API key", rf"sk-(?!ant-)(?:[A-Za-z0-9]+-)??(?:{_OPENAI_HALVES})", ("sk-",),
          loose=rf"sk-(?!ant-)(?:proj-|svcacct-|admin-)?{_B64URL}{{20,}}"),
    Shape("Google API key", rf"AIza{_B64URL}{{35}}", ("AIza",)),
    Shape("Google OAuth access token", rf"ya29\.(?:c\.)?{_B64URL}{{20,}}", ("ya29.",)),  # ya29.c.…: a service account's
    Shape("Google OAuth refresh token", rf"1//0{_B64URL}{{30,}}", ("1//0",)),
    Shape("Hugging Face token", r"hf_[A-Za-z]{34}", ("hf_",), loose=r"hf_[A-Za-z0-9]{30,}"),
    Shape("AWS access key id", r"(?:AKIA|ASIA)[0-9A-Z]{16}", ("AKIA", "ASIA")),
    Shape("AWS session token", r"(?:FwoGZXIvYXdzE|IQoJb3JpZ2lu)[A-Za-z0-9/+=]{40,}", ("FwoGZXIvYXdzE", "IQoJb3JpZ2lu")),
    # named (aws_secret_access_key = …, STS's <SecretAccessKey>, SSO's "secretAccessKey"): the value alone is the key
    Shape("AWS secret access key", r"(?i:(?:aws_?)?secret_?access_?key)[\"'\s:=>\\]+(?P<value>[A-Za-z0-9/+]{40})(?![/+])",
          ("aws", "secretaccesskey", "secret_access_key"), fold=True),
    Shape("Azure AD client secret", r"[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}", ("Q~",), back=4),
    Shape("GitHub token", r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}|github_pat_[A-Za-z0-9_]{22,}",
          ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), loose=r"gh[pousr]_[A-Za-z0-9]{36,}"),
    # an Azure SAS ``sig=``, an S3 or GCS presigned URL's ``X-Amz-Signature=``/``X-Goog-Signature=`` (base64 or hex, as
    # written in a URL; ``sig%3D…`` up to ``%26`` in a URL percent-encoded whole): an older cassette's request kept one
    Shape("signed URL signature", r"(?i:sig|signature)(?:=|%3[Dd])(?P<value>(?:[A-Za-z0-9+/_.=-]|%(?!26)[0-9A-Fa-f]{2}){16,})",
          ("sig=", "signature=", "sig%3d", "signature%3d"), fold=True),
    Shape("bearer token", r"(?i:bearer)\s+[A-Za-z0-9._~+/-]{16,}=*", ("bearer",), fold=True),
    Shape("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.|\n){0,8000}?-----END [A-Z ]*PRIVATE KEY-----", ("-----BEGIN ",)),
)

# Values made up for tests and docs look like keys but are not: "Bearer test_openai_api_key", "sk-fake-…", our placeholders.
_PLACEHOLDER_WORDS = re.compile(r"(?i)test|fake|dummy|example|placeholder|redacted|scrubbed|xxxx|your[_-]")
# Nor does a value made of words: a slug ("sk-learn-tutorial-for-beginners-2024") or an identifier
# ("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"); a random key soon has a letter no word would ("a0Af", "Zy9X").
_WORDS = re.compile(r"(?:[A-Z]?[a-z]{2,}|[0-9]{1,4}|[-_.])+")
_LEFT_OUT = frozenset({
    "KeywordDetector", "Base64HighEntropyString", "HexHighEntropyString",  # prose is full of "key" and random-looking ids
    "IPPublicDetector",  # an address is not a credential
    "ArtifactoryDetector",  # "AP…"/"AKC…" words in model output
    "PrivateKeyDetector",  # finds only the BEGIN line; the block shape above takes the whole key
    # anchored on keywords (cloudant, cl, ibm, cos, sl) tried at every position: most of a scan's time, for
    # legacy IBM services no LLM test calls
    "CloudantDetector", "IbmCloudIamDetector", "IbmCosHmacDetector", "SoftlayerDetector",
})

# detect-secrets detectors whose patterns start with a character class or ignore case run at every position of the
# text (most of a large scan's time); each is run only on a text holding one of the literals every match contains
# (lower-case: searched in the lower-cased text).
_ANCHORED = {
    "MailchimpDetector": ("-us",),
    "SlackDetector": ("xox", "hooks.slack.com"),
    "AWSKeyDetector": ("a3t", "abia", "acca", "akia", "asia", "aws"),
}


def is_made_up(value: str) -> bool:
    """Whether a value is one made up for tests and docs, or a placeholder (``sk-fake-…``, ``<scrubbed>``)."""
    return _PLACEHOLDER_WORDS.search(value) is not None


@lru_cache(maxsize=1)
def _detectors() -> tuple[Any, ...]:
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:
        raise CommandError(
            "llm-replay audit and scrub recognise key shapes with detect-secrets, which is not installed: "
            "pip install detect-secrets"
        ) from None
    classes = get_mapping_from_secret_type_to_class().values()
    return tuple(cls() for cls in sorted(classes, key=lambda cls: cls.__name__) if cls.__name__ not in _LEFT_OUT)


def require_detectors() -> None:
    """Fail early, with the install command, when detect-secrets is missing."""
    _detectors()


def secret_shapes(text: str, raw: bool = False) -> Iterator[tuple[str, str]]:
    """(kind, value) of every key-shaped value in ``text`` (placeholders and made-up test keys left out);
    ``raw``: ``text`` is a file's bytes, where a key may touch the bytes before it."""
    lowered = text.lower()
    for shape in OWN_SHAPES:
        for value in shape.values(text, lowered, raw):
            if not is_made_up(value) and not _WORDS.fullmatch(value):
                yield shape.kind, value
    for detector in _detectors():
        anchors = _ANCHORED.get(type(detector).__name__)
        if anchors is not None and not any(anchor in lowered for anchor in anchors):
            continue
        for value in detector.analyze_string(text):
            if isinstance(value, str) and len(value) >= 8 and not is_made_up(value):
                yield detector.secret_type, value
