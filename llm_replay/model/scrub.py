"""Credentials out of everything a cassette stores.

Every cassette's ``put`` passes what it stores through ``Scrubber.interaction``, so record, refresh,
import, merge and export cannot bypass it. Canonical requests never hold headers, so request
credentials (``authorization``, ``api-key``, cookies) never reach a cassette; what is left to clean
is the query, the URL path, the bodies, the response headers, and above all the *value* of every
secret-looking environment variable, wherever it appears.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import json
import os
import re
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence
from urllib.parse import parse_qsl, quote, urlsplit

from .credentials import (
    SECRET_BODY_FIELDS,
    SECRET_ENV_WORDS,
    SECRET_NAME_STEMS,
    is_secret_body_field,
    is_secret_header,
    is_secret_query_param,
    squashed,
)
if TYPE_CHECKING:  # only named in signatures: the pytest plugin builds a Scrubber at start-up, before any request
    from .fingerprint import CanonicalRequest
    from .interaction import Interaction, RecordedResponse
    from .streamed_text import StreamedBody

MIN_SECRET_LENGTH = 8  # shorter values ("true", "1", "dev") are settings, and replacing them would mangle bodies
PATTERN_PLACEHOLDER = "<scrubbed>"
# Each name in any case, snake, kebab or camel (``access_token``, ``access-token``, ``accessToken``).
_FIELD_NAMES = "|".join(sorted(name.replace("_", "[-_]?") for name in SECRET_BODY_FIELDS)) + r"|[a-z0-9_-]*api[-_]?key"
# The query parameters of a signed URL that carry its credentials (Azure SAS, AWS SigV4 and GCS V4 presigning).
_SIGNED_URL_PARAMS = ("sig", "signature", "x-amz-credential", "x-amz-security-token", "x-amz-signature", "x-goog-credential", "x-goog-signature")
# What a body holding one of them holds, as services write them (the regex, which ignores case, costs ~0.2 µs a byte),
# and as a URL percent-encoded whole writes them (``sig%3D``)
_SIGNED_URL_HINTS = (b"sig=", b"Sig=", b"ignature=", b"-Amz-", b"-amz-", b"-Goog-", b"-goog-", b"ig%3D", b"ig%3d", b"ature%3D", b"ature%3d")
_SIGNED_URL_TEXT_HINTS = tuple(hint.decode() for hint in _SIGNED_URL_HINTS)
# What a text holding a URL holds: its ``://``, or that percent-encoded (a URL passed whole as another URL's parameter)
_URL_MARKS = ("://", "%3A%2F%2F", "%3a%2f%2f")
_URL_MARKS_BYTES = tuple(mark.encode() for mark in _URL_MARKS)
# Where a signed URL's parameter starts: after ``?`` or ``&``, or ``;`` (HTML's ``&amp;``, ``&#38;``), JSON's ``\u0026``
# (Go's encoder), or ``%26``/``%3F`` in a URL percent-encoded whole, whose ``=`` is ``%3D``; its value ends where the
# parameter does (at ``%26`` too, and at an escaped quote in JSON). Used ignoring case.
_PARAM_START = r"(?:[?&;]|\\u0026|%26|%3F)"
_PARAM_EQUALS = r"(?:=|%3D)"
_PARAM_VALUE = r"(?:[^&#\"'\s<>\\%]|%(?!26))+"
# What else changes each time a URL is signed (Azure SAS start and expiry, its user delegation key's, AWS's and Google's
# signing time): replaced with the credentials in a request's signed URL, so a URL signed again on the next run is
# keyed the same (an answer's are kept: a later fetch of the URL is keyed by them).
_SIGNING_TIMES = ("st", "se", "skt", "ske", "x-amz-date", "x-goog-date")
# What a request's string holding a signed URL holds: its signature, as services write it (sig=, Signature=,
# X-Amz-Signature=); fewer looks than _SIGNED_URL_TEXT_HINTS, as every request pays them where it has an "=".
_SIGNATURE_TEXT_HINTS = ("ig=", "IG=", "ature=", "ATURE=")
# and as a URL percent-encoded whole writes it (``sig%3D``), looked for only where a ``%3`` is (after a ``%``)
_ENCODED_SIGNATURE_TEXT_HINTS = ("ig%3", "IG%3", "ature%3", "ATURE%3")
# The first byte of a stream: an event stream's first length, or a server-sent event's field (data:, event:, id:, retry:,
# a comment), Gemini's JSON array of chunks, or blank before one. Any other answer (a JSON object, text, audio) is told
# from a stream by it and never loads streamed_text.py.
_STREAM_FIRST_BYTES = frozenset(bytes([byte]) for byte in b"\x00deir: \t\r\n[")


class _NameRules:
    """The rules by name as regular expressions, compiled on first use: at import they cost every pytest session
    that merely has the plugin installed a few ms.

    By their names: a JSON field's string value (in a JSON body, an SSE event, JSON inside text), a form field's
    value, a URL's password. Each placeholder contains what its pattern refuses, so scrubbing twice changes nothing.
    A scheme starts where no scheme character precedes it, and the first look (``hint``) needs only ``_api_key`` of a
    ``*_api_key`` name: without both, a long unbroken token (hex, base64) costs time quadratic in its length.
    """

    def __init__(self) -> None:
        self.json_field = re.compile(rf'(?i)("(?:{_FIELD_NAMES})"\s*:\s*)"(?:[^"\\]|\\.)*"')
        # the same field in JSON text held in a JSON string, as the outer string's escapes write it (a tool call's arguments
        # whole in one answer or event: "arguments": "{\"api_key\": \"…\"}"): its quotes are \", and its value ends at
        # the first \" that is no escape of the embedded text (\\\" is its quote, \\\\ its backslash, \\n its newline)
        self.embedded_field = re.compile(
            rf'(?i)(\\"(?:{_FIELD_NAMES})\\"(?:\s|\\[nrt])*:(?:\s|\\[nrt])*)\\"(?:[^"\\]|\\[^"\\]|\\\\(?:\\["\\]|[^"\\]))*\\"'
        )
        # and two strings deep (a tool's JSON result held as text in a field of the JSON an agent framework sends back, as
        # an answer's bytes write it): its quotes are \\\", the value's characters and escapes any run of backslashes that
        # is no quote of its own (a quote deeper in is 7 or more), and it ends at a quote after exactly three
        deep = r'(?<!\\)\\{3}"'
        self.deep_field = re.compile(
            rf'(?i)({deep}(?:{_FIELD_NAMES}){deep}(?:\s|\\+[nrt])*:(?:\s|\\+[nrt])*){deep}(?:[^"\\]|\\+[^"\\]|\\{{7,}}")*\\{{3}}"'
        )
        # a signed URL's credentials in an answer (an image URL's Azure SAS signature, an S3 or GCS presigned URL's), which
        # a request's query never keeps; not ``key=``, ``code=``…, which a model's own text writes in example URLs. The value
        # ends where the parameter does (also at an escaped quote or ``\u0026`` in JSON)
        names = "|".join(map(re.escape, _SIGNED_URL_PARAMS))
        self.url_query = re.compile(rf"(?i)({_PARAM_START}(?:{names}){_PARAM_EQUALS}){_PARAM_VALUE}")
        self.url_query_bytes = re.compile(self.url_query.pattern.encode(), re.IGNORECASE)
        # in a stream's joined text, a value whose first piece the scrub of each event replaced already (``sig=<scrubbed>``
        # then the rest of it, in the next event's piece)
        self.joined_url_query = re.compile(rf"(?i)({_PARAM_START}(?:{names}){_PARAM_EQUALS})(?:{re.escape(PATTERN_PLACEHOLDER)})?{_PARAM_VALUE}")
        # the same in a request's strings (an image URL the app got from storage), its signing times too
        times = "|".join(map(re.escape, _SIGNING_TIMES))
        self.request_url_query = re.compile(rf"(?i)({_PARAM_START}(?:{names}|{times}){_PARAM_EQUALS}){_PARAM_VALUE}")
        # AWS temporary credentials as the endpoints botocore fetches them from answer (STS's XML, SSO's camelCase JSON):
        # answers only, never sent back in a body (they sign requests), so requests need no such rule
        aws = r"secret[-_]?access[-_]?key|session[-_]?token"
        self.aws_json_bytes = re.compile(rf'(?i)("(?:{aws})"\s*:\s*)"(?:[^"\\]|\\.)*"'.encode())
        self.aws_xml_bytes = re.compile(rf"(?i)(<(?:{aws})>)[^<]*".encode())
        # the container credential endpoint's and instance metadata's answer (ECS, CodeBuild, EKS pod identity, EC2) names
        # its session token ``Token``: taken only beside a ``SecretAccessKey`` (a logprob's ``token`` is no credential)
        self.aws_token_bytes = re.compile(rb'("Token"\s*:\s*)"(?:[^"\\]|\\.)*"')
        # a secret-named field's, or a header's named as a credential, string value in a Python repr: a LangChain model's
        # settings given at the call, in its cache key (``[('extra_body', {'client_secret': '…'}), ('extra_headers',
        # {'X-Gateway-Token': '…'})]``), which stays text when a class among them is no JSON
        header = r"(?:[a-z0-9]+[-_])*(?:token|secret|password|passwd|credentials?|api[-_]?key|auth|authorization|cookie\d*|signature)(?:[-_][a-z0-9]+)*"
        self.repr_field = re.compile(rf"(?i)('(?:{_FIELD_NAMES}|{header})'\s*[:,]\s*)'(?:[^'\\]|\\.)*'")
        self.form_field = re.compile(rf"(?i)((?:^|&)(?:{_FIELD_NAMES})=)[^&]*")
        self.userinfo = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^/\s:@\"'<>]*):[^/\s@\"'<>]+@")
        self.hint = re.compile(rf"(?i)(?:{_FIELD_NAMES.replace('[a-z0-9_-]*api', 'api')})|://[^/\s@]*:[^/\s@]*@")  # might a rule apply?
        self.userinfo_hint = re.compile(r"://[^/\s@]*:[^/\s@]*@")
        self.json_field_bytes, self.embedded_field_bytes, self.deep_field_bytes, self.form_field_bytes, self.userinfo_bytes, self.hint_bytes = (
            re.compile(pattern.pattern.encode(), pattern.flags & ~re.UNICODE)
            for pattern in (self.json_field, self.embedded_field, self.deep_field, self.form_field, self.userinfo, self.hint)
        )


@functools.cache
def name_rules() -> _NameRules:
    """The compiled rules by name (once per process)."""
    return _NameRules()


def _might_name_a_secret(text: str) -> bool:
    """Whether ``name_rules().hint.search(text)`` may find something, in a few µs where the regex takes 100-200 µs on
    a request.

    Python's regex engine tries each of the case-insensitive names at every position; plain substring
    searches in the text lowered without ``-`` and ``_`` (``squashed``: one search per name for every spelling) do
    not. For ASCII text it says True wherever the regex does (all an ASCII letter can match is its other case), and
    also for a separator inside a word (``pass_word``); any other text is left to the regex (Unicode case folding has
    exceptions).
    """
    if not text.isascii():
        return name_rules().hint.search(text) is not None
    words = squashed(text)
    return any(map(words.__contains__, SECRET_NAME_STEMS)) or ("@" in text and name_rules().userinfo_hint.search(text) is not None)


def _might_name_a_secret_in(body: bytes) -> bool:
    """``_might_name_a_secret`` of a body: an ASCII one (most answers) is looked at with substring searches, ~20 µs on
    3.5 kB where ``hint_bytes`` took ~350 µs (what printing a cassette and recording paid per answer); any other by
    the regex."""
    if body.isascii():
        return _might_name_a_secret(body.decode("ascii"))
    return name_rules().hint_bytes.search(body) is not None


# While a live answer is recorded: (value, placeholder name) of each credential its request sent (``sent_credentials``).
_SENT: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("llm_replay_sent_credentials", default=())


class sent_credentials:
    """While a live answer is recorded, the credentials its request sent (an ``Authorization`` token or a Basic password,
    ``x-api-key``, ``api-key``…, a credential query parameter of its ``url``) count as secrets of the answer: an error that
    names the key it was given (a 401 from an OpenAI-compatible gateway, Google's 404 page quoting the URL) stores
    ``<scrubbed:authorization header>``, whatever variable (or none) held the key. Request headers themselves are never
    stored, nor such parameters. Used on the record path only: a replayed call never sends one."""

    __slots__ = ("values", "_token")

    def __init__(self, headers: Mapping[Any, Any], url: str = "") -> None:
        found = [*_header_credentials(headers), *_query_credentials(url)]
        self.values = tuple(sorted(found, key=lambda item: -len(item[0])))

    def __enter__(self) -> None:
        self._token = _SENT.set(self.values) if self.values else None

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _SENT.reset(self._token)


def _query_credentials(url: str) -> Iterator[tuple[str, str]]:
    """(value, placeholder name) of each credential query parameter of ``url`` (``key=``, ``sig=``…), as sent and decoded."""
    query = urlsplit(url).query if "?" in url else ""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if is_secret_query_param(name) and len(value) >= MIN_SECRET_LENGTH:
            for form in dict.fromkeys((value, quote(value, safe=""))):
                yield form, f"{name.lower()} query parameter"


def _header_credentials(headers: Mapping[Any, Any]) -> Iterator[tuple[str, str]]:
    """(value, placeholder name) of each credential in a request's headers: a bearer token, a Basic password, a key header's
    value; not a SigV4 signature (it changes with every request, and no answer repeats it) nor cookies."""
    for raw_name, raw_value in headers.items():
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else str(raw_name)
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if not isinstance(value, str) or not is_secret_header(name) or "cookie" in name.lower():
            continue
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() in ("bearer", "token"):
            value = rest.strip()
        elif scheme.lower() == "basic":
            try:
                value = base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (binascii.Error, ValueError):
                continue
        elif scheme.startswith("AWS4-"):
            continue
        if len(value) >= MIN_SECRET_LENGTH:
            yield value, f"{name.lower()} header"


def env_placeholder(name: str) -> str:
    """What stands in a cassette where the value of environment variable ``name`` was."""
    return f"<scrubbed:{name}>"


class _EnvSecrets:
    """The environment as last read: its raw variable names, the raw names and values of the secret ones, the
    secrets worked out from them (and as they read in canonical JSON), and test ids scrubbed with them."""

    __slots__ = ("keys", "secret_keys", "values", "secrets", "in_json", "test_ids")

    def __init__(self, keys: tuple, secret_keys: tuple, values: tuple, secrets: list[tuple[str, str]], in_json: tuple[str, ...], test_ids: dict[str, str]) -> None:
        self.keys, self.secret_keys, self.values, self.secrets, self.in_json, self.test_ids = keys, secret_keys, values, secrets, in_json, test_ids


class Scrubber:
    """What counts as a secret: the built-in rules, plus the user's variable names and value patterns.

    ``env_names`` are extra variable names or globs (``MY_SERVICE_CREDS``, ``*_DSN``); ``patterns``
    are regular expressions whose matches become ``<scrubbed>``. The environment is read at each
    use, so a key set by ``monkeypatch.setenv`` in the middle of a session is caught too.

    A plain class, not a frozen dataclass: it keeps caches of the environment it read, so it is no value to
    compare, and generating a dataclass's methods cost importing the plugin ~4 M instructions.
    """

    __slots__ = ("env_names", "patterns", "environ", "_text_patterns", "_bytes_patterns", "_env_cache", "_secret_name_of", "_secret_keys_by_keys")

    def __init__(self, env_names: Iterable[str] = (), patterns: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> None:
        self.env_names = tuple(env_names)
        self.patterns = tuple(patterns)
        self.environ = os.environ if environ is None else environ  # os.environ as it is when built, not at import
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append((re.compile(pattern), re.compile(pattern.encode())))
            except re.error as error:
                raise ValueError(f"secret pattern {pattern!r} is not a valid regular expression ({error}); fix it in ini llm_secret_patterns") from None
        self._text_patterns = tuple(text for text, _ in compiled)
        self._bytes_patterns = tuple(raw for _, raw in compiled)
        self._env_cache: _EnvSecrets | None = None
        # a variable's raw name (os.environ keeps bytes) -> its name when its value is a secret, else None
        self._secret_name_of: dict[str | bytes, str | None] = {}
        # a set of raw variable names -> the raw names of its secret ones
        self._secret_keys_by_keys: dict[tuple, tuple] = {}

    def __repr__(self) -> str:
        return f"Scrubber(env_names={self.env_names!r}, patterns={self.patterns!r})"

    def is_secret_env_name(self, name: str) -> bool:
        """Whether the value of variable ``name`` is a secret (by the built-in words or the user's globs)."""
        upper = name.upper()
        return any(word in upper for word in SECRET_ENV_WORDS) or any(fnmatch.fnmatchcase(upper, glob.upper()) for glob in self.env_names)

    def env_secrets(self) -> list[tuple[str, str]]:
        """(value, variable name) of every current secret value, longest first so no value is cut in half.

        Every request asks, so the answer is remembered: the names are classified again only when the
        set of variables changes, and only the secret ones' values are compared (pytest itself rewrites
        PYTEST_CURRENT_TEST at every test phase).
        """
        return self._current_env().secrets

    def _current_env(self) -> _EnvSecrets:
        environ = self.environ
        raw = getattr(environ, "_data", environ)  # os.environ's raw names and values: nothing decoded to compare
        keys = tuple(raw)
        cached = self._env_cache
        if cached is not None and keys == cached.keys:
            secret_keys = cached.secret_keys
        else:  # pytest adds and removes PYTEST_CURRENT_TEST around every test: each set is worked out once
            secret_keys = self._secret_keys_by_keys.get(keys)
            if secret_keys is None:
                secret_keys = self._secret_keys(keys)
        values = tuple(map(raw.__getitem__, secret_keys))
        if cached is not None and secret_keys == cached.secret_keys and values == cached.values:
            cached.keys = keys  # the same secrets under another set of names (PYTEST_CURRENT_TEST came or went)
            return cached
        decode = getattr(environ, "decodevalue", str)
        found = {value: self._secret_name_of[key] for key, value in zip(secret_keys, map(decode, values)) if len(value) >= MIN_SECRET_LENGTH}
        found = {form: name for value, name in found.items() for form in _written_forms(value)}
        secrets = sorted(found.items(), key=lambda item: (-len(item[0]), item[1]))
        cached = _EnvSecrets(keys, secret_keys, values, secrets, tuple(_json_escaped(value) for value, _ in secrets), {})
        self._env_cache = cached
        return cached

    def _secret_keys(self, keys: tuple) -> tuple:
        known = self._secret_name_of
        for raw in keys:
            if raw not in known:
                name = os.fsdecode(raw)
                known[raw] = name if self.is_secret_env_name(name) else None
        secret_keys = tuple(sorted((raw for raw in keys if known[raw] is not None), key=known.__getitem__))
        if len(self._secret_keys_by_keys) >= 8:
            self._secret_keys_by_keys.clear()
        self._secret_keys_by_keys[keys] = secret_keys
        return secret_keys

    def pattern_matches(self, text: str) -> Iterator[tuple[str, str]]:
        """(pattern, matched text) for each match of the user's patterns, for the audit."""
        for source, pattern in zip(self.patterns, self._text_patterns):
            for match in pattern.finditer(text):
                yield source, match.group(0)

    def text(self, text: str, secrets: Sequence[tuple[str, str]] | None = None) -> str:
        """``text`` with every secret value and pattern match replaced by a placeholder."""
        for value, name in self.env_secrets() if secrets is None else secrets:
            if value in text:
                text = text.replace(value, env_placeholder(name))
        for pattern in self._text_patterns:
            text = pattern.sub(PATTERN_PLACEHOLDER, text)
        return text

    def data(self, data: bytes, secrets: Sequence[tuple[str, str]] | None = None) -> bytes:
        """The bytes twin of ``text``, for bodies that may not be text at all."""
        for value, name in self.env_secrets() if secrets is None else secrets:
            encoded = value.encode("utf-8", "surrogateescape")
            if encoded in data:
                data = data.replace(encoded, env_placeholder(name).encode())
        for pattern in self._bytes_patterns:
            data = pattern.sub(PATTERN_PLACEHOLDER.encode(), data)
        return data

    def request(self, request: CanonicalRequest) -> CanonicalRequest:
        """The canonical request without secret query parameters or secret values (fingerprint recomputed).

        Lookups go through this too, so a key in a URL path matches its recording whoever's key it is.
        """
        env = self._current_env()
        secrets, in_json = env.secrets, env.in_json
        text = request.to_json()
        binary = bool(base64_texts(request.body_kind, request.body))
        if not binary and not any(value in text for value in in_json) and not self._pattern_in(request) and not _might_name_a_secret(text) and not _might_hold_a_signed_url(text):
            return request  # the usual case, decided without building anything
        query = tuple((self.text(key, secrets), self.text(value, secrets)) for key, value in request.query if not is_secret_query_param(key))
        body = _without_secret_fields(request.body)
        if binary:  # base64 in the cassette: the secrets are looked for in the bytes it stands for
            body = self._binary_body(request.body_kind, body, secrets)
        if request.body_kind == "text" and isinstance(body, str):  # a form, or JSON that did not parse
            rules = name_rules()
            body = rules.json_field.sub(rf'\1"{PATTERN_PLACEHOLDER}"', rules.form_field.sub(rf"\1{PATTERN_PLACEHOLDER}", body))
        scrubbed = replace(
            request,
            host=name_rules().userinfo.sub(rf"\1:{PATTERN_PLACEHOLDER}@", self.text(request.host, secrets)),
            path=self.text(request.path, secrets),
            query=query,
            body=self._value(body, secrets),
        )
        return request if scrubbed.fingerprint == request.fingerprint else scrubbed

    def as_looked_up(self, stored: CanonicalRequest) -> CanonicalRequest:
        """A request a cassette stored, scrubbed as a lookup scrubs one now: one recorded before a rule was added (a
        secret-named field in JSON text held in a string, as a tool call's arguments are sent back; a camelCase name,
        ``accessToken``; a query parameter named as a credential since) is found under the key its request has now
        (``RekeyIndex``, on a miss)."""
        query = tuple(pair for pair in stored.query if not is_secret_query_param(pair[0]))  # as canonicalize drops them
        if query != stored.query:
            stored = replace(stored, query=query)
        return self.request(stored)

    def response(self, response: RecordedResponse) -> RecordedResponse:
        """The response without cookies, account identifiers or headers named like credentials, and with no secret
        value in header names and values, nor in the body (OAuth tokens in JSON or form fields, URL passwords), nor any
        credential its request sent (``sent_credentials``)."""
        secrets = self.env_secrets()
        sent = _SENT.get()
        if sent:
            secrets = sorted([*secrets, *sent], key=lambda item: -len(item[0]))
        rules = name_rules()
        headers = {
            self.text(name, secrets): [_url_credentials(rules.userinfo.sub(rf"\1:{PATTERN_PLACEHOLDER}@", self.text(value, secrets)), rules.url_query) for value in values]
            for name, values in response.headers.items()
            if not is_secret_header(name)
        }
        body = response.body
        if body[:1] in _STREAM_FIRST_BYTES:
            body = self._stream(body, secrets, headers)
        else:  # the usual case: one JSON answer, text, audio (``_body``, written out: a call costs every answer)
            body = self.data(body, secrets)
            if _might_name_a_secret_in(body):
                body = self._named(body, headers, rules)
            if b"ccessKey" in body or b"essionToken" in body:  # SecretAccessKey, sessionToken…: AWS credentials
                body = _without_aws_credentials(body, rules)
            body = _without_signed_urls(body, rules)
            if b"<scrubbed" in body and _is_xml(body, headers):
                body = _XML_PLACEHOLDER.sub(rb"&lt;\1&gt;", body)
        if body is not response.body and body != response.body:  # a placeholder is not as long as what it stands for
            headers = {name: [str(len(body))] if name.lower() == "content-length" else values for name, values in headers.items()}
        return replace(response, reason=self.text(response.reason, secrets), headers=headers, body=body)

    def _body(self, body: bytes, secrets: Sequence[tuple[str, str]], headers: Mapping[str, list[str]] | None = None) -> bytes:
        """A response body (or an event stream's payload) without secret values, pattern matches, secret-named JSON
        fields' values and URL passwords (and secret-named form fields' values where ``headers`` say it is a form)."""
        rules = name_rules()
        body = _without_signed_urls(self.data(body, secrets), rules)
        return self._named(body, headers, rules) if _might_name_a_secret_in(body) else body

    def _named(self, body: bytes, headers: Mapping[str, list[str]] | None, rules: _NameRules) -> bytes:
        """A body some rule by name may apply to (``hint_bytes``) with the secret-named fields' values and URL passwords replaced."""
        body = rules.json_field_bytes.sub(rb'\1"' + PATTERN_PLACEHOLDER.encode() + b'"', body)
        if b'\\"' in body:  # JSON text in a JSON string: a tool call's arguments
            body = rules.embedded_field_bytes.sub(rb'\1\\"' + PATTERN_PLACEHOLDER.encode() + rb'\\"', body)
            if b'\\\\\\"' in body:  # and JSON text in a string of those: a tool call's argument holding JSON
                body = rules.deep_field_bytes.sub(rb'\1\\\\\\"' + PATTERN_PLACEHOLDER.encode() + rb'\\\\\\"', body)
                if _THREE_DEEPER_BYTES in body:  # and deeper still
                    body = _in_deeper_strings_bytes(body)
        body = rules.userinfo_bytes.sub(rb"\1:" + PATTERN_PLACEHOLDER.encode() + b"@", body)
        if headers and any("x-www-form-urlencoded" in value for name, values in headers.items() if name.lower() == "content-type" for value in values):
            body = rules.form_field_bytes.sub(rb"\1" + PATTERN_PLACEHOLDER.encode(), body)
        return body

    def _stream(self, body: bytes, secrets: Sequence[tuple[str, str]], headers: Mapping[str, list[str]]) -> bytes:
        """A body that may be a stream: an event stream scrubbed payload by payload (its frames rebuilt, lengths and
        CRCs); server-sent events scrubbed as any body. Then the secrets its events spread over several pieces."""
        from .streamed_text import StreamedBody, looks_streamed

        stream = StreamedBody.of(body, lambda payload: self._body(payload, secrets)) if body[:1] == b"\x00" else None
        if stream is not None:
            return self._unsplit(stream, secrets) if self._may_split(stream.raw(), secrets) else stream.body()
        body = self._body(body, secrets, headers)
        if looks_streamed(body) and self._may_split(body, secrets) and (stream := StreamedBody.of(body)) is not None:
            return self._unsplit(stream, secrets)
        return body

    def _may_split(self, raw: bytes, secrets: Sequence[tuple[str, str]]) -> bool:
        """Whether a stream's pieces could spell a secret that no piece holds whole: a pattern may match anything; a
        secret value only if some piece ends with its start (``may_be_split``, a few searches, nothing parsed); a
        secret-named field or a URL's password only if its name or ``://`` is there (``may_spell_a_name``); a signed
        URL's credentials only if ``://`` and its signature's name are (``may_sign_a_url``)."""
        from .streamed_text import may_be_split, may_sign_a_url, may_spell_a_name

        return bool(self._text_patterns) or may_be_split(raw, (value for value, _ in secrets)) or may_spell_a_name(raw) or may_sign_a_url(raw)

    def _unsplit(self, stream: StreamedBody, secrets: Sequence[tuple[str, str]]) -> bytes:
        """The stream's body with every secret value and pattern match that its events spread over several pieces
        replaced in the text the pieces make up."""
        stream.replace(lambda text: self._spans(text, secrets))
        return stream.body()

    def _spans(self, text: str, secrets: Sequence[tuple[str, str]]) -> list[tuple[int, int, str]]:
        """Where each secret value, pattern match, secret-named JSON field's value and URL password is in ``text``,
        and its placeholder."""
        spans = _named_spans(text)
        for value, name in secrets:
            start = text.find(value)
            while start >= 0:
                spans.append((start, start + len(value), env_placeholder(name)))
                start = text.find(value, start + len(value))
        for pattern in self._text_patterns:
            spans += ((match.start(), match.end(), PATTERN_PLACEHOLDER) for match in pattern.finditer(text))
        return spans

    def test_id(self, test_id: str) -> str:
        """A test's id as a cassette stores it: a secret in a parametrize id replaced, as everywhere else.
        Remembered while the secrets stay the same (a test's id is asked for at each phase and report)."""
        return self._test_id(self._current_env(), test_id)

    def test_ids(self, test_ids: Iterable[str]) -> list[str]:
        """``test_id`` of each, the environment read once (a collection, a read-ahead window)."""
        env = self._current_env()
        return [self._test_id(env, test_id) for test_id in test_ids]

    def _test_id(self, env: _EnvSecrets, test_id: str) -> str:
        scrubbed = env.test_ids.get(test_id)
        if scrubbed is None:
            if len(env.test_ids) >= 4096:
                env.test_ids.clear()
            scrubbed = env.test_ids[test_id] = self.text(test_id, env.secrets)
        return scrubbed

    def interaction(self, interaction: Interaction) -> Interaction:
        """What a cassette may store of ``interaction``, under the key it was given: whoever computed the key
        (``Recorder.keyed``, import) did so from the scrubbed request, under match rules this cannot know."""
        request = interaction.request
        scrubbed = self.request(request)
        if scrubbed is not request:
            interaction = replace(interaction, request_json=scrubbed.to_json())
        return replace(interaction, response=self.response(interaction.response), tests=tuple(map(self.test_id, interaction.tests)))

    def _pattern_in(self, request: CanonicalRequest) -> bool:
        """Whether a pattern matches one of the request's strings. Searched string by string, not in the JSON
        text, where escapes (a newline as ``\\n``) and quotes around values would hide matches."""
        if not self._text_patterns:
            return False
        strings = _strings([request.host, request.path, *(item for pair in request.query for item in pair), request.body])
        return any(pattern.search(string) for string in strings for pattern in self._text_patterns)

    def _binary_body(self, kind: str, body: Any, secrets: Sequence[tuple[str, str]]) -> Any:
        """A ``bytes`` body, or a form's parts that are not UTF-8, with ``data`` applied to the bytes under the base64."""
        if kind == "bytes":
            return self._base64(body, secrets)
        return [{**part, "base64": self._base64(part["base64"], secrets)} if _is_base64_part(part) else part for part in body]

    def _base64(self, encoded: str, secrets: Sequence[tuple[str, str]]) -> str:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return encoded  # not base64 after all: scrubbed as the text it is
        scrubbed = self.data(raw, secrets)
        return encoded if scrubbed == raw else base64.b64encode(scrubbed).decode("ascii")

    def _value(self, value: Any, secrets: Sequence[tuple[str, str]]) -> Any:
        if isinstance(value, str):
            value = self.text(value, secrets)
            if "@" in value and name_rules().userinfo_hint.search(value):  # a URL's password in a prompt or a field
                value = name_rules().userinfo.sub(rf"\1:{PATTERN_PLACEHOLDER}@", value)
            return _url_credentials(value, name_rules().request_url_query, _SIGNATURE_TEXT_HINTS + _ENCODED_SIGNATURE_TEXT_HINTS)  # an image URL from storage
        if isinstance(value, list):
            return [self._value(item, secrets) for item in value]
        if isinstance(value, dict):
            return {self.text(key, secrets) if isinstance(key, str) else key: self._value(item, secrets) for key, item in value.items()}
        return value


def _url_credentials(value: str, pattern: re.Pattern[str], hints: tuple[str, ...] = _SIGNED_URL_TEXT_HINTS) -> str:
    """A text with a signed URL's credentials replaced: a response header's value (``Location``, ``url_query``) or a
    request's string (``request_url_query``, where ``hints`` look for the signature only)."""
    if _may_hold_a_url(value, hints):
        return pattern.sub(rf"\1{PATTERN_PLACEHOLDER}", value)
    return value


def _may_hold_a_url(text: Any, hints: tuple[Any, ...], marks: tuple[Any, ...] = _URL_MARKS) -> bool:
    """Whether ``text`` (str, or bytes with bytes ``hints`` and ``marks``) may hold a URL with one of ``hints``: its
    ``://`` (or percent-encoded, ``%3A%2F%2F``) and a hint."""
    return any(map(text.__contains__, marks)) and any(map(text.__contains__, hints))


def _might_hold_a_signed_url(text: str) -> bool:
    """Whether a request's canonical text may hold a signed URL in a string (an ``=``, or ``%3D`` in a URL percent-encoded
    whole: its query is stored as pairs)."""
    return ("=" in text and any(map(text.__contains__, _SIGNATURE_TEXT_HINTS))) or (
        "%" in text and "%3" in text and any(map(text.__contains__, _ENCODED_SIGNATURE_TEXT_HINTS))  # "%": memchr, ~30 ns
    )


# A placeholder written in an XML answer (a variable's value, a pattern's match): a tag there, unclosed, so the answer no
# longer parsed; written as XML text instead, which a parser reads as the placeholder.
_XML_PLACEHOLDER = re.compile(rb"<(scrubbed(?::[^<>]*)?)>")


def _is_xml(body: bytes, headers: Mapping[str, list[str]]) -> bool:
    """Whether an answer is XML (its declaration, or its Content-Type says so): not HTML, which a browser reads either way."""
    return body.lstrip()[:5] == b"<?xml" or any("xml" in value for name, values in headers.items() if name.lower() == "content-type" for value in values)


def _without_aws_credentials(body: bytes, rules: _NameRules) -> bytes:
    """An answer with AWS temporary credentials' secret parts replaced: in JSON, and in XML as an escaped placeholder
    (``&lt;scrubbed&gt;``, which botocore reads as ``<scrubbed>``); the access key id, no secret alone, is kept."""
    if b'"SecretAccessKey"' in body:
        body = rules.aws_token_bytes.sub(rb'\1"' + PATTERN_PLACEHOLDER.encode() + b'"', body)
    body = rules.aws_json_bytes.sub(rb'\1"' + PATTERN_PLACEHOLDER.encode() + b'"', body)
    return rules.aws_xml_bytes.sub(rb"\1&lt;" + PATTERN_PLACEHOLDER[1:-1].encode() + b"&gt;", body)


def _named_spans(text: str) -> list[tuple[int, int, str]]:
    """Where, in a stream's joined text, the rules by name apply: the string value of a secret-named JSON field
    (a tool call's arguments), a URL's password, a signed URL's credentials; each becomes ``<scrubbed>``, its quotes,
    ``@`` and ``name=`` kept."""
    spans: list[tuple[int, int, str]] = []
    if _might_name_a_secret(text):
        rules = name_rules()
        matches = [*rules.json_field.finditer(text), *rules.userinfo.finditer(text)]
        spans = [(match.end(1) + 1, match.end() - 1, PATTERN_PLACEHOLDER) for match in matches]
        if '\\"' in text:  # JSON text in a string of the joined JSON text (a tool call's argument holding JSON)
            spans += [(match.end(1) + 2, match.end() - 2, PATTERN_PLACEHOLDER) for match in rules.embedded_field.finditer(text)]
    if _may_hold_a_url(text, _SIGNED_URL_TEXT_HINTS):
        spans += [(match.end(1), match.end(), PATTERN_PLACEHOLDER) for match in name_rules().joined_url_query.finditer(text)]
    return spans


def named_secret_values(text: str, deep: int = 0) -> Iterator[str]:
    """The string value of each secret-named JSON field in ``text``, also in JSON text one and two strings deep (as its
    escapes write it there), and deeper in the strings that hold more (``_deeper_strings``), as the rules by name find
    them: for the audit, which reads what an older cassette stored before a rule was added (a camelCase name). A text
    naming no such field in any spelling costs one look."""
    if not any(map(squashed(text).__contains__, SECRET_NAME_STEMS)):
        return
    rules = name_rules()
    for pattern, quote in ((rules.json_field, '"'), (rules.embedded_field, '\\"'), (rules.deep_field, '\\\\\\"'), (rules.repr_field, "'")):
        if quote in text:
            yield from (text[match.end(1) + len(quote) : match.end() - len(quote)] for match in pattern.finditer(text))
    for string in _deeper_strings(text, _THREE_DEEPER, deep):
        yield from named_secret_values(string, deep + 1)


# JSON text nested deeper than the rules' regular expressions read (a string's JSON text, two strings deep, in a text): a
# string holding it is decoded and read again, up to this many strings deep, so the cost stays bounded (each level reads
# again only the strings that hold a quote two levels further in)
_MAX_STRINGS_DEEP = 8
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STRING_LITERAL_BYTES = re.compile(_STRING_LITERAL.pattern.encode(), re.DOTALL)
# a quote of JSON text two strings deeper than a text's own strings, as the text writes it (\\\"), and three (7 backslashes)
_TWO_DEEPER = '\\\\\\"'
_THREE_DEEPER = "\\" * 7 + '"'
_THREE_DEEPER_BYTES = _THREE_DEEPER.encode()


def _deeper_strings(text: str, mark: str, deep: int) -> Iterator[str]:
    """The decoded value of each JSON string in ``text`` that holds ``mark``, while ``deep`` (how many strings deep ``text``
    is) is under the cap."""
    if deep >= _MAX_STRINGS_DEEP or mark not in text:
        return
    for match in _STRING_LITERAL.finditer(text):
        if mark in match.group():
            decoded = _decoded_string(match.group())
            if decoded is not None:
                yield decoded


def _decoded_string(literal: str | bytes) -> str | None:
    """A JSON string literal's value (None if it is none: a stray quote in text that is not JSON)."""
    try:
        value = json.loads(literal)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _in_deeper_strings(text: str, deep: int) -> str:
    """JSON text ``deep`` strings deep with the credential fields replaced in its strings whose JSON text holds JSON text
    in turn (three or more strings deep from ``text``'s own level: deeper than ``_without_embedded_fields`` reads)."""
    if deep >= _MAX_STRINGS_DEEP or _TWO_DEEPER not in text:
        return text
    return _STRING_LITERAL.sub(lambda match: _scrubbed_literal(match.group(), _TWO_DEEPER, deep + 1), text)


def _in_deeper_strings_bytes(body: bytes) -> bytes:
    """An answer's JSON with the credential fields replaced three or more strings deep (deeper than ``_named``'s regular
    expressions read)."""
    return _STRING_LITERAL_BYTES.sub(lambda match: _scrubbed_literal(match.group(), _THREE_DEEPER_BYTES, 1), body)


def _scrubbed_literal(literal: Any, mark: Any, deep: int) -> Any:
    """A JSON string literal (str, or bytes) that holds ``mark``, its value (``deep`` strings deep) decoded, scrubbed
    (``_without_embedded_fields``) and written again if a field's value changed; any other literal as it is."""
    decoded = _decoded_string(literal) if mark in literal else None
    if decoded is None:
        return literal
    new = _without_embedded_fields(decoded, deep)
    if new == decoded:
        return literal
    written = json.dumps(new, ensure_ascii=False)
    return written.encode() if isinstance(literal, bytes) else written


def _without_signed_urls(body: bytes, rules: _NameRules) -> bytes:
    """An answer (or a stream's events, each whole) with a signed URL's credentials replaced (an image URL DALL-E answers)."""
    if _may_hold_a_url(body, _SIGNED_URL_HINTS, _URL_MARKS_BYTES):
        return rules.url_query_bytes.sub(rb"\1" + PATTERN_PLACEHOLDER.encode(), body)
    return body


def _without_secret_fields(value: Any) -> Any:
    """A JSON body with the string values of credential fields replaced, in JSON text held in its strings too (a tool
    call's arguments sent back, as a scrubbed answer replays them); a multipart form's credential parts too."""
    if isinstance(value, str):
        return _without_embedded_fields(value)
    if isinstance(value, list):
        return [_without_secret_fields(item) for item in value]
    if not isinstance(value, dict):
        return value
    if isinstance(value.get("name"), str) and is_secret_body_field(value["name"]) and isinstance(value.get("value"), str):
        return {**value, "value": PATTERN_PLACEHOLDER}  # a multipart part: {"name": "client_secret", "value": …}
    return {
        key: PATTERN_PLACEHOLDER if isinstance(item, str) and isinstance(key, str) and is_secret_body_field(key) else _without_secret_fields(item)
        for key, item in value.items()
    }


def _without_embedded_fields(text: str, deep: int = 1) -> str:
    """A string (``deep`` strings deep in a body) with the values of credential fields in the JSON text it holds replaced
    (``{"api_key": "<scrubbed>"}``), as ``_named`` replaces them in an answer (there, written with the string's escapes),
    and in JSON text held deeper (``_in_deeper_strings``)."""
    if ('"' not in text and "'" not in text) or not _might_name_a_secret(text):
        return text
    if "'" in text:  # a Python repr: a LangChain model's settings in its cache key
        text = name_rules().repr_field.sub(rf"\1'{PATTERN_PLACEHOLDER}'", text)
    text = name_rules().json_field.sub(rf'\1"{PATTERN_PLACEHOLDER}"', text)
    return _in_deeper_strings(_without_fields_one_string_deeper(text), deep)


def _without_fields_one_string_deeper(text: str) -> str:
    """JSON text with the values of credential fields in JSON text held in its strings replaced: a tool's JSON result
    that an agent framework sends back as text in a field of its own JSON (``{"output": "{\\"api_key\\": …}"}``)."""
    if '\\"' not in text:
        return text
    return name_rules().embedded_field.sub(rf'\1\\"{PATTERN_PLACEHOLDER}\\"', text)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)


def base64_texts(kind: Any, body: Any) -> list[str]:
    """The parts of a canonical request's body stored as base64 (a ``bytes`` body, a form's fields that are not UTF-8),
    where no text search sees a secret: the scrub and the audit read the bytes behind them."""
    if kind == "bytes":
        return [body] if isinstance(body, str) else []
    if kind == "multipart" and isinstance(body, list):
        return [part["base64"] for part in body if _is_base64_part(part)]
    return []


def _is_base64_part(part: Any) -> bool:
    return isinstance(part, dict) and isinstance(part.get("base64"), str)


def _written_forms(value: str) -> list[str]:
    """A secret as it may be written: itself, percent-encoded in a URL (a key in a path or a query), and as common JSON
    encoders write a string: Python's (anything not ASCII as ``\\u00f6``), Go's (``<``, ``>``, ``&`` as ``\\u003c``),
    .NET's (both, and ``'`` ``+`` `````` `` ``"``, in upper-case hex: ``\\u003C``), each also with PHP's escaped
    slashes (``\\/``)."""
    forms = [value, quote(value, safe=""), quote(value)]
    for written in (value, _json_text(value, ascii_only=True), _json_text(value, "<>&"), _json_text(value, "<>&'+`\"", ascii_only=True, upper=True)):
        forms += (written, written.replace("/", "\\/"))
    return list(dict.fromkeys(forms))


def _json_text(value: str, escaped: str = "", ascii_only: bool = False, upper: bool = False) -> str:
    """``value`` inside a JSON string as an encoder that escapes ``escaped`` (and, ``ascii_only``, all but ASCII) writes it."""
    text = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
    for char in escaped:
        text = text.replace('\\"' if char == '"' else char, f"\\u{ord(char):04x}")
    return re.sub(r"\\u([0-9a-f]{4})", lambda match: "\\u" + match.group(1).upper(), text) if upper else text


def _json_escaped(value: str) -> str:
    """How ``value`` reads inside the canonical JSON text (quotes and backslashes escaped)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]
