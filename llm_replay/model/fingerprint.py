"""The canonical form of a request, its stable hash, and a field-level diff between two of them.

Canonical = method, host, path, sorted query and the parsed body (JSON with sorted keys;
multipart without its random boundary). Headers never take part, so credentials never do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from .credentials import is_secret_query_param

_MISSING = object()
_DEEP = 200  # brackets in a body past which its JSON is checked for dumpable depth
# The canonical text: sorted keys, no spaces, text as it is (one encoder for every request: json.dumps with options makes one each call).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_encoder() -> Callable[[Any], str]:
    """``_CANONICAL_JSON.encode``, or the same C encoder built once rather than per call (half the cost of a request's
    canonical text). Without the circular-reference check it keeps no state between calls; a body is parsed JSON or
    a multipart form, never circular (and a cycle would still fail: too deep to encode)."""
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without the C accelerator
        return _CANONICAL_JSON.encode
    chunks = make(None, _CANONICAL_JSON.default, json.encoder.encode_basestring, None, ":", ",", True, False, True)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_canonical_json = _canonical_encoder()

# Providers that name the model in the URL path: Gemini (…/models/<model>:generateContent, also on Vertex AI)
# and Bedrock (/model/<model id>/converse, the id's ":" sent as %3A).
_MODEL_IN_PATH = re.compile(r"/models/(?P<gemini>[^/:]+):[A-Za-z]+$|^/model/(?P<bedrock>[^/]+)/[a-z-]+$")


@dataclass(frozen=True, eq=False)
class CanonicalRequest:
    """A request reduced to what decides its answer; stored beside its fingerprint."""

    method: str
    host: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    body_kind: str = "empty"
    fingerprint: str = field(init=False)
    _text: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        text = _canonical_json(self.as_dict())
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "fingerprint", hashlib.blake2b(text.encode(), digest_size=16).hexdigest())

    @classmethod
    def _made(cls, method: str, host: str, path: str, query: tuple[tuple[str, str], ...], body: Any, body_kind: str) -> "CanonicalRequest":
        """What the constructor makes, without its ``object.__setattr__`` for each of the eight fields (~1.5 K
        instructions each): every request an SDK sends is canonicalized once."""
        request = object.__new__(cls)
        fields = vars(request)
        fields.update(method=method, host=host, path=path, query=query, body=body, body_kind=body_kind)
        text = fields["_text"] = _canonical_json(request.as_dict())
        fields["fingerprint"] = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        return request

    def as_dict(self) -> dict[str, Any]:
        """The JSON-able form stored in cassettes."""
        return {
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "query": [list(pair) for pair in self.query],
            "body_kind": self.body_kind,
            "body": self.body,
        }

    def to_json(self) -> str:
        """Stable text: the same request always gives the same characters (made once, with the fingerprint)."""
        return self._text

    @classmethod
    def from_json(cls, text: str) -> "CanonicalRequest":
        """The request back from its stored text."""
        data = json.loads(text)
        return cls(
            method=data["method"],
            host=data["host"],
            path=data["path"],
            query=tuple((key, value) for key, value in data["query"]),
            body=data["body"],
            body_kind=data["body_kind"],
        )

    @classmethod
    def from_stored(cls, text: str) -> "CanonicalRequest":
        """A request back from the text a cassette stores (``to_json``'s own output), taken as its canonical
        form rather than dumped again: listings read 100,000 of them. Use ``from_json`` for any other text."""
        data = json.loads(text)
        request = object.__new__(cls)
        query = tuple((key, value) for key, value in data["query"]) if data["query"] else ()
        vars(request).update(method=data["method"], host=data["host"], path=data["path"], query=query, body=data["body"], body_kind=data["body_kind"], _text=text)
        return request  # its fingerprint is hashed from the text if someone asks (__getattr__)

    def __getattr__(self, name: str) -> Any:
        """Only for a request made by ``from_stored``: its fingerprint, hashed on first use."""
        if name != "fingerprint" or "_text" not in vars(self):
            raise AttributeError(name)
        fingerprint = hashlib.blake2b(self._text.encode(), digest_size=16).hexdigest()
        vars(self)["fingerprint"] = fingerprint
        return fingerprint

    @property
    def url(self) -> str:
        """The URL as recorded, credentials removed from the query."""
        return url_of(self.host, self.path, self.query)

    @property
    def endpoint(self) -> str:
        """``POST api.openai.com/v1/chat/completions``: how a person names the call (no scheme, no query)."""
        host = self.host.split("://", 1)[-1]
        return f"{self.method} {host}{self.path}"

    @property
    def model(self) -> str | None:
        """The model the request names: a JSON or form ``model`` field, else the URL path (Gemini, Bedrock)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("model"), str):
            return self.body["model"]
        if self.body_kind == "multipart":
            return next((part.get("value") for part in self.body if part.get("name") == "model"), None)
        found = _MODEL_IN_PATH.search(self.path)
        return unquote(found["gemini"] or found["bedrock"]) if found else None

    def prompt(self) -> str | None:
        """The last message, prompt or input: what a reader recognises the request by."""
        body = self.body
        if not isinstance(body, dict):
            return None
        # OpenAI, Anthropic and Bedrock send "messages"; Gemini sends "contents"
        messages = body.get("messages", body.get("contents"))
        if isinstance(messages, list) and messages:
            last = messages[-1]
            role = last.get("role", "?") if isinstance(last, dict) else "?"
            return f"({role}) {_message_text(last)}"
        for name in ("input", "prompt"):
            if name in body:
                value = body[name]
                if isinstance(value, list) and value:
                    value = value[-1]
                return _message_text(value)
        return None


def url_of(host: str, path: str, query: Iterable[Sequence[str]]) -> str:
    """A canonical request's URL from its parts (``CanonicalRequest.url``; stores that read the parts in SQL)."""
    joined = "&".join(f"{key}={value}" for key, value in query)
    return f"{host}{path}" + (f"?{joined}" if joined else "")


def canonicalize(method: str, url: str, body: bytes | str | None, content_type: str | bytes = "") -> CanonicalRequest:
    """The canonical request for one HTTP request as the client is about to send it.

    Total: any input gives a request (property-tested), since a crash here would fail a user's test.
    ``content_type`` may be bytes: botocore sends its header values so.
    """
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    url = _encodable(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1" and friends: keep the text whole rather than fail the test
        return _finish(method, "", url, (), body, content_type)
    host = f"{parts.scheme}://{parts.netloc}" if parts.scheme else parts.netloc
    query = tuple(sorted((key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_query_param(key)))
    return _finish(method, host, parts.path or "/", query, body, content_type)


def respelled(request: CanonicalRequest) -> CanonicalRequest:
    """``request`` with what it can spell several ways for one value spelled one way, or ``request`` itself when it
    spells it so already: JSON numbers (``0.0`` as ``0``, ``1e16`` as ``10000000000000000``); the host in lower case,
    without its scheme's default port or a trailing dot, IDNA ``xn--`` labels in Unicode; the path with unreserved
    characters unescaped and other escapes in upper case (``%2D`` as ``-``, ``%3a`` as ``%3A``: RFC 3986 6.2.2).
    Only for the second look-up on a miss (and counting repeats): keys stay as they are.

    A float becomes an int only when it is integral, so two bodies respell alike exactly when their numbers are equal
    (Python compares int and float exactly); a bool is never a number here (``true`` is not ``1``).
    """
    host, path = request.host, request.path
    if isinstance(host, str) and not _plainly_written(host):
        host = _plain_host(host)
    if isinstance(path, str) and "%" in path:
        path = _plain_path(path)
    body, text = request.body, request.to_json()
    try:
        if request.body_kind == "json" and (".0" in text or "e+" in text):
            # How Python writes an integral float: "100.0", "-0.0", past 1e16 "1e+16" (two substring searches: a
            # regex costs as much as the dump). Read again by the C scanner, each float turned int where integral.
            body = _PLAIN_NUMBERS.decode(text)["body"]
        if host == request.host and path == request.path and body is request.body:
            return request
        plain = CanonicalRequest._made(request.method, host, path, request.query, body, request.body_kind)
    except RecursionError:  # a body nested right at Python's limit: keep its spelling
        return request
    return request if plain.to_json() == text else plain  # "1.0" was in a string only


def _plain_float(text: str) -> float | int:
    """A JSON float, as the equal int when it is integral (exact: ``int`` of a float never rounds)."""
    value = float(text)
    return int(value) if value.is_integer() else value


_PLAIN_NUMBERS = json.JSONDecoder(parse_float=_plain_float)


def _plainly_written(host: str) -> bool:
    """Whether ``_plain_host`` would leave ``host`` as it is, by C-speed tests that pass for nearly every host."""
    return host.islower() and not host.endswith(_ODD_ENDINGS) and ".:" not in host and "xn--" not in host


def _plain_host(host: str) -> str:
    """``scheme://host[:port]`` with the host name in lower case, without the root's trailing dot, its IDNA ``xn--``
    labels in Unicode, and the scheme's default port dropped; the user part before ``@`` (scrubbed, and
    case-sensitive) as it is."""
    scheme, separator, netloc = host.partition("://")
    if not separator:
        return host
    user, at, place = netloc.rpartition("@")
    place = place.lower().removesuffix(_DEFAULT_PORTS.get(scheme, ""))
    name, colon, port = place.rpartition(":") if ":" in place and not place.endswith("]") else (place, "", "")  # [v6]
    name = name.removesuffix(".")  # "api.openai.com." names the same host, absolutely
    if "xn--" in name:
        name = ".".join(map(_unicode_label, name.split(".")))
    return f"{scheme}://{user}{at}{name}{colon}{port}"


def _unicode_label(label: str) -> str:
    """An IDNA A-label (``xn--bcher-kva``) as the Unicode label it stands for (``bücher``): decoding is exact, where
    encoding depends on the IDNA version. A label that is no A-label (not Punycode, or plain ASCII once decoded, as
    ``xn--abc-``) is another name, kept as it is."""
    if not label.startswith("xn--"):
        return label
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return label
    return decoded if not decoded.isascii() and decoded.encode("punycode") == label[4:].encode("ascii") else label


def _plain_path(path: str) -> str:
    """The path with each percent-escape of an unreserved character as that character and the others in upper case:
    the spellings RFC 3986 (6.2.2) makes equal. ``%3A`` stays: a reserved character and its escape may differ."""
    return _ESCAPE.sub(_plain_escape, path)


def _plain_escape(escape: re.Match[str]) -> str:
    character = chr(int(escape[1], 16))
    return character if character in _UNRESERVED else escape[0].upper()


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
_ODD_ENDINGS = (*_DEFAULT_PORTS.values(), ".")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _finish(method: str, host: str, path: str, query: tuple[tuple[str, str], ...], body: bytes | str | None, content_type: str) -> CanonicalRequest:
    kind, value = _canonical_body(body, content_type)
    method = _encodable(method).upper()
    try:
        return CanonicalRequest._made(method, host, path, query, value, kind)
    except RecursionError:  # JSON nested right at Python's limit: it loaded, but does not dump one level deeper
        kind, value = _text_or_bytes(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body or b""))
        return CanonicalRequest(method=method, host=host, path=path, query=query, body=value, body_kind=kind)


def _encodable(text: str) -> str:
    """``text`` without lone surrogates, which could not be hashed or stored as UTF-8."""
    return text if text.isascii() else text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _canonical_body(body: bytes | str | None, content_type: str) -> tuple[str, Any]:
    if body is None or body == b"" or body == "":
        return "empty", None
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if content_type.lower().startswith("multipart/") and "boundary=" in content_type:
        parts = _multipart_parts(raw, content_type)
        if parts is not None:
            return "multipart", parts
    stripped = raw.lstrip()[:1]
    if stripped in (b"{", b"["):
        try:
            value = _loaded_json(raw)
            # A lone surrogate ("\ud800") is valid JSON but cannot be stored as UTF-8, and very deep nesting
            # may load yet not dump: check those rare bodies by dumping them (cheap tests first).
            if b"\\u" in raw or raw.count(b"[") + raw.count(b"{") > _DEEP:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            return "json", value
        except (ValueError, RecursionError):
            pass  # a body that only looks like JSON (or nests deeper than Python recurses) is kept as text below
    return _text_or_bytes(raw)


def _loaded_json(raw: bytes) -> Any:
    """``json.loads(raw)`` for a body an SDK sends, without its Python steps where they change nothing (~12 K of its
    ~25 K instructions): a body whose first bytes hold no NUL is UTF-8 to json.loads too (a NUL there makes it UTF-16
    or UTF-32), decoded as it would; JSON's four whitespace characters around the document skipped by C-level strips."""
    if b"\x00" in raw[:4]:
        return json.loads(raw)
    text = raw.decode("utf-8", "surrogatepass")
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    value, end = _JSON_DECODER.raw_decode(text, start)
    if text[end:].strip(_JSON_SPACE):
        raise ValueError(f"extra data after the JSON document at character {end}")
    return value


_JSON_SPACE = " \t\n\r"
_JSON_DECODER = json.JSONDecoder()


def _text_or_bytes(raw: bytes) -> tuple[str, str]:
    try:
        return "text", raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes", base64.b64encode(raw).decode("ascii")


def _multipart_parts(raw: bytes, content_type: str) -> list[dict[str, Any]] | None:
    """The form's parts in order, with the random boundary gone; file contents as size and digest."""
    boundary = content_type.split("boundary=", 1)[1].split(";", 1)[0].strip().strip('"').encode()
    parts = []
    for chunk in raw.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        framed = chunk.strip(b"\r\n")
        head, separator, content = framed.partition(b"\r\n\r\n")
        if not separator:
            if b"\r\n\r\n" not in chunk:
                return None  # no blank line after the headers: not a form, kept as text
            head, content = framed, b""  # an empty part: the strip took the blank line that ends its headers
        headers = dict(_part_header(line) for line in head.decode("latin-1").split("\r\n") if ":" in line)
        disposition = _disposition(headers.get("content-disposition", ""))
        part: dict[str, Any] = {"name": disposition.get("name")}
        if "filename" in disposition:
            part["filename"] = disposition["filename"]
            part["content_type"] = headers.get("content-type")
            part["size"] = len(content)
            part["sha256"] = hashlib.sha256(content).hexdigest()
        else:
            try:
                part["value"] = content.decode("utf-8")
            except UnicodeDecodeError:
                part["base64"] = base64.b64encode(content).decode("ascii")
        parts.append(part)
    return parts


def _part_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def _disposition(value: str) -> dict[str, str]:
    params = {}
    for item in value.split(";")[1:]:
        key, _, raw = item.strip().partition("=")
        params[key.lower()] = raw.strip('"')
    return params


def _message_text(message: Any) -> str:
    """The readable text of a chat message, a Responses input item, or a plain prompt."""
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        content = message.get("content", message.get("parts", message.get("text")))  # Gemini: "parts"
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [_block_text(item) for item in content if isinstance(item, dict)]
            if any(texts):
                return " ".join(text for text in texts if text)
        if "tool_calls" in message:
            return "tool calls: " + json.dumps(message["tool_calls"], sort_keys=True)
    return json.dumps(message, sort_keys=True, ensure_ascii=False)


def _block_text(block: dict[str, Any]) -> str:
    """A content block's text; a tool result (Anthropic, Bedrock, Gemini) as what it returned."""
    if isinstance(block.get("text"), str):
        return block["text"]
    for name in ("tool_result", "toolResult", "functionResponse"):
        if block.get("type") == name or name in block:
            result = block.get(name, block)
            return "tool result: " + json.dumps(result.get("content", result.get("response", result)), sort_keys=True, ensure_ascii=False)
    return ""


# -- differences -----------------------------------------------------------------------------


class FieldDifference(NamedTuple):  # a value record as a NamedTuple: a frozen dataclass costs the import ~2 M instructions
    """One field that differs between a recording and a new request."""

    path: str
    recorded: Any
    requested: Any

    def describe(self, width: int = 100) -> str:
        """``~ path: recorded -> requested``, ``+`` for a new field, ``-`` for a dropped one."""
        if self.recorded is _MISSING:
            return f"+ {self.path}: {short_json(self.requested, width)}"
        if self.requested is _MISSING:
            return f"- {self.path}: {short_json(self.recorded, width)}"
        return f"~ {self.path}: {short_json(self.recorded, width)} -> {short_json(self.requested, width)}"

    @property
    def only_requested(self) -> bool:
        """The field is new in the request."""
        return self.recorded is _MISSING

    @property
    def only_recorded(self) -> bool:
        """The field was dropped from the request."""
        return self.requested is _MISSING


def differences(recorded: CanonicalRequest, requested: CanonicalRequest) -> list[FieldDifference]:
    """Every leaf field that differs, by path (``messages[1].content``), in a stable order; not a host or a URL path
    that differs only in spelling (case, a default port, an escape), which replays as the same (``respelled``)."""
    old = dict(field_paths(recorded.as_dict()))
    new = dict(field_paths(requested.as_dict()))
    return [
        FieldDifference(path, old.get(path, _MISSING), new.get(path, _MISSING))
        for path in sorted(old.keys() | new.keys())
        if not _same(old.get(path, _MISSING), new.get(path, _MISSING)) and not _same_url_part(path, old.get(path), new.get(path))
    ]


def _same_url_part(field: str, recorded: Any, requested: Any) -> bool:
    """Whether a canonical request's ``host`` or ``path`` holds one value in two spellings (``https://API.example.com:443``
    and ``https://api.example.com``, ``/v1/models/gpt%2D4`` and ``/v1/models/gpt-4``); a stored request edited by hand
    may hold no text there: then plain equality."""
    plain = _URL_SPELLINGS.get(field)
    if plain is None:
        return False
    if not isinstance(recorded, str) or not isinstance(requested, str):
        return recorded == requested
    return plain(recorded) == plain(requested)


_URL_SPELLINGS = {"host": _plain_host, "path": _plain_path}


def _same(recorded: Any, requested: Any) -> bool:
    """Equal, counting NaN (which JSON bodies can carry) as equal to itself, as the fingerprint does. A bool never
    equals a number (Python's ``True == 1``): JSON's ``true`` and ``1`` are different requests to every API."""
    if (type(recorded) is bool) is not (type(requested) is bool):
        return False
    return recorded == requested or (recorded != recorded and requested != requested)


def distance(recorded: CanonicalRequest, requested: CanonicalRequest) -> float:
    """How far apart two requests are: another endpoint counts most, then each differing field,
    a changed text by how much of it changed (so a prompt with one word edited is closest)."""
    from difflib import SequenceMatcher  # only a miss asks: difflib's import is a third of the plugin's start-up

    endpoint = recorded.method != requested.method or not (
        _same_url_part("path", recorded.path, requested.path) and _same_url_part("host", recorded.host, requested.host)
    )
    total = 1000.0 if endpoint else 0.0
    for difference in differences(recorded, requested):
        if isinstance(difference.recorded, str) and isinstance(difference.requested, str):
            total += 1.0 - SequenceMatcher(None, difference.recorded, difference.requested).quick_ratio()
        else:
            total += 1.0
    return total


def field_paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) for every leaf of a JSON value: ``messages[1].content``; used by diffs and the audit."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from field_paths(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from field_paths(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def short_json(value: Any, width: int) -> str:
    """A value as JSON, cut to ``width`` characters."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"
