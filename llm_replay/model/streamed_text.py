"""The text a streamed answer spreads over its events, a few characters each: joined per field, and rewritten.

A model streams its text (a tool call's arguments, its reasoning) in pieces: the events of server-sent events
(OpenAI, Anthropic, Gemini; an event's ``data:`` lines joined by newlines, as the SSE spec says), the chunks of
Gemini's JSON-array stream (``streamGenerateContent`` without ``alt=sse``: ``[{…},\r\n{…}]``), or the frames of AWS's
binary event stream (Bedrock, its JSON payloads and the JSON under their base64 ``bytes``). A secret it echoes is
whole in no event, so a search for whole values misses it, while the SDK joins the pieces and hands the test the
secret. Here each field's pieces are joined in event order, grouped by their JSON path (list positions dropped; the
event's type and the stream's own indices, ``index``, ``output_index``, ``content_index``, ``contentBlockIndex``,
kept, so two choices or content blocks streamed side by side stay apart), and a span of a joined text is replaced by
putting what stands for it in the piece where the span starts and cutting the span's other characters out of the
pieces after: the stream still parses, and the SDK's text is the scrubbed text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .credentials import SECRET_NAME_STEMS

if TYPE_CHECKING:  # event_stream.py is imported where an event stream is met, not with every answer
    from .event_stream import Frame

Span = tuple[int, int, str]  # start and end in a field's joined text, and what stands there instead
_INDICES = ("index", "output_index", "content_index", "summary_index", "contentBlockIndex")
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
_JOINED = "\n\x00\n"  # between fields' texts read as one: no secret runs across it
_ARRAY_START = re.compile(rb"\s*\[\s*\{")  # Gemini's JSON-array stream: a list of chunk objects
_BETWEEN_CHUNKS = re.compile(r"[\s,]*")


def looks_streamed(body: bytes) -> bool:
    """Whether ``body`` may be a stream (server-sent events, an event stream's first length, a JSON array of objects),
    from its first bytes alone: what every other answer (a JSON object, text, audio) costs."""
    return body[:1] == b"\x00" or body[:64].lstrip().startswith(_SSE_FIELDS) or _ARRAY_START.match(body[:64]) is not None


def may_be_split(text: bytes, values: Iterable[str]) -> bool:
    """Whether a JSON string in ``text`` could end with the start of one of ``values`` while another string begins
    with what follows it. False means no value is split over the pieces, decided without parsing: one search of the
    text per value finds where its first two characters or more stand before a closing quote
    (``_starts_before_a_quote``), and only for those cuts (and a cut after the first character) is the rest looked for
    after an opening quote (its next one or two characters)."""
    for value in values:
        data = value.encode("utf-8", "surrogateescape")
        if len(data) < 2:
            continue
        if b'"' in data:  # a quote inside the value: each cut searched for as it is
            cuts: Iterable[int] = (cut for cut in range(1, len(data)) if data[:cut] + b'"' in text)
        else:
            cuts = {2 + len(chain) for chain in _starts_before_a_quote(data).findall(text)} if len(data) > 2 else set()
            cuts.add(1)  # its first character alone before a quote is too common to search for first
            if len(data) > _LONGEST_CUT + 1 and data[:_LONGEST_CUT] in text:
                return True  # cut further in than the search looks: its whole start is there
        for cut in cuts:
            if (b'"' + data[cut : cut + 2] in text or b'"' + data[cut : cut + 1] + b'"' in text) and data[:cut] + b'"' in text:
                return True
    return False


_LONGEST_CUT = 96  # how far into a value the search for its start before a quote goes (its nesting is that deep)


def may_spell_a_name(text: bytes) -> bool:
    """Whether the joined pieces of ``text``'s strings could hold a secret-named JSON field (``{"api_key": "…"}`` streamed
    as a tool call's arguments) or a URL's password (``https://user:pass@host``), decided without parsing: a field's
    name comes with an escaped quote (``\\"``) and its words whole or split as ``may_be_split`` looks for them (any
    case, snake, kebab or camel: searched in the text lowered without ``-`` and ``_``); a URL's password with an ``@``
    and its ``://`` whole or split."""
    if b"@" in text and (b"://" in text or may_be_split(text, ("://",))):
        return True
    if b'\\"' not in text:
        return False
    words = text.lower().replace(b"-", b"").replace(b"_", b"")
    return any(word.encode() in words for word in SECRET_NAME_STEMS) or may_be_split(words, SECRET_NAME_STEMS)


def may_sign_a_url(text: bytes) -> bool:
    """Whether the joined pieces of ``text``'s strings could hold a signed URL's credentials (an Azure SAS image URL the
    model writes out): its ``://`` and its signature's name (``sig=``, ``X-Amz-Signature=``, any case; ``sig%3D`` in a
    URL passed percent-encoded as another's parameter), each whole or split as ``may_be_split`` looks for them. Its
    query's ``?`` and ``=`` are whole in some piece: a stream without both (most of them) pays two searches."""
    if b"=" not in text or b"?" not in text or (b"://" not in text and not may_be_split(text, ("://",))):
        return False
    lowered = text.lower()
    return any(name.encode() in lowered for name in _SIGNATURE_NAMES) or may_be_split(lowered, _SIGNATURE_NAMES)


_SIGNATURE_NAMES = ("sig=", "signature=", "sig%3d", "signature%3d")


@functools.lru_cache(maxsize=256)
def _starts_before_a_quote(data: bytes) -> "re.Pattern[bytes]":
    """Matches each occurrence of the first two bytes of ``data``, capturing how much more of it follows right before
    a quote (in a lookahead, so overlapping occurrences are all tried; the regex engine finds the two bytes in C):
    ``sk(?=((?:-(?:a(?:n)?)?)?)")`` for ``sk-ant…``. Only one cut fits an occurrence, as ``data`` holds no quote."""
    chain = b""
    for byte in reversed(data[2 : min(len(data) - 1, _LONGEST_CUT + 1)]):
        chain = b"(?:" + re.escape(bytes([byte])) + chain + b")?"
    return re.compile(re.escape(data[:2]) + b"(?=(" + chain + b')")', re.DOTALL)


class _Event:
    """One event's JSON and where it goes back: ``spans`` of the body's text (an SSE event's first ``data:`` value
    gets the JSON, its other ``data:`` lines go; a JSON array's chunk), or an event stream's frame ``at`` (its
    payload, or the JSON under the payload's base64 ``bytes``)."""

    __slots__ = ("value", "at", "spans", "payload", "changed")

    def __init__(self, value: Any, at: int, spans: Sequence[tuple[int, int]] = (), payload: dict | None = None) -> None:
        self.value, self.at, self.spans, self.payload, self.changed = value, at, spans, payload, False


class StreamedBody:
    """A streamed answer taken apart into its events, read per field (``texts``) and written back (``body``) with only
    the events that changed encoded again. ``text`` is the body SSE and JSON-array events are spans of (bytes for
    SSE, str for a JSON array, which is parsed as text); None for an event stream, whose ``frames`` it has."""

    def __init__(self, original: bytes, text: bytes | str | None, frames: list[Frame] | None, events: list[_Event], changed: bool = False) -> None:
        self._original, self._text, self._frames, self._events, self._changed = original, text, frames, events, changed
        self._fields: list[list[tuple[int, Any, Any]]] | None = None

    @classmethod
    def of(cls, body: bytes, payloads: Callable[[bytes], bytes] | None = None) -> "StreamedBody | None":
        """The stream in ``body``, or None when it is neither server-sent events nor an event stream. ``payloads``
        transforms each event stream payload, string header and the bytes under a payload's base64 before the events
        are read (an SSE body is text: its caller transforms it whole)."""
        if body[:1] == b"\x00":
            from . import event_stream

            frames = event_stream.frames(body)
            if frames is None:
                return None
            read = [_transformed(frame, payloads) for frame in frames] if payloads is not None else frames
            events = [event for at, frame in enumerate(read) if (event := _frame_event(at, frame)) is not None]
            return cls(body, None, read, events, changed=read != frames)
        if _ARRAY_START.match(body[:64]):
            text = body.decode("utf-8", "surrogateescape")
            array = _array_events(text)
            return None if array is None else cls(body, text, None, array)
        if not looks_streamed(body):
            return None
        return cls(body, body, None, _sse_events(body))

    def raw(self) -> bytes:
        """What the quick look (``may_be_split``) reads: an SSE or JSON-array body as it is; an event stream's payloads
        and the JSON under their base64, one after another."""
        if self._text is not None:
            return self._original
        assert self._frames is not None
        inner = [_dumps(event.value) for event in self._events if event.payload is not None]
        return b"\n".join([frame.payload for frame in self._frames] + inner)

    def texts(self) -> list[str]:
        """Each field's pieces joined, for every field streamed in more than one distinct piece."""
        return ["".join(container[key] for _, container, key in refs) for refs in self._streamed_fields()]

    def text(self) -> str:
        """``texts`` read as one (fields apart), for a detector to run once."""
        return _JOINED.join(self.texts())

    def replace(self, spans_in: Callable[[str], Sequence[Span]]) -> bool:
        """Replace, in each field's joined text, the spans ``spans_in`` finds in it; whether anything changed."""
        changed = False
        for refs in self._streamed_fields():
            pieces = [container[key] for _, container, key in refs]
            spans = _merged(spans_in("".join(pieces)))
            if not spans:
                continue
            for (at, container, key), new in zip(refs, _cut(pieces, spans)):
                if container[key] != new:
                    container[key] = new
                    self._events[at].changed = changed = True
        self._changed |= changed
        return changed

    def body(self) -> bytes:
        """The stream written back: the events that changed encoded again, every other byte as it was."""
        if not self._changed:
            return self._original
        if isinstance(self._text, str):
            return _spliced(self._text, self._events, lambda value: _dumps(value).decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        if self._text is not None:
            return _spliced(self._text, self._events, _dumps)
        from . import event_stream

        assert self._frames is not None
        frames = list(self._frames)
        for event in self._events:
            if event.changed:
                if event.payload is None:
                    payload = event.value
                else:
                    payload = {**event.payload, "bytes": base64.b64encode(_dumps(event.value)).decode("ascii")}
                frames[event.at] = event_stream.Frame(frames[event.at].headers, _dumps(payload))
        return event_stream.encoded(frames)

    def _streamed_fields(self) -> list[list[tuple[int, Any, Any]]]:
        """(event, container, key) of each field's pieces, for the fields streamed in more than one distinct piece
        (an id or a model name repeated in every event is no streamed text)."""
        if self._fields is None:
            fields: dict[tuple, list[tuple[int, Any, Any]]] = {}
            for at, event in enumerate(self._events):
                kind = event.value.get("type") if isinstance(event.value, dict) else None
                path = (self._event_type(event), kind if isinstance(kind, str) else None)
                _walk(event.value, path, at, fields)
            self._fields = [refs for refs in fields.values() if len({container[key] for _, container, key in refs} - {""}) > 1]
        return self._fields

    def _event_type(self, event: _Event) -> str | None:
        return self._frames[event.at].header(":event-type") if self._frames is not None else None


def _sse_events(body: bytes) -> list[_Event]:
    """The JSON of each server-sent event: its ``data:`` lines up to a blank line, joined by newlines (JSON spread
    over several lines is one event); events that are no JSON object or list (``[DONE]``, keep-alives) left out."""
    events: list[_Event] = []
    data: list[tuple[int, int, int, int]] = []  # each data: line's start, its value's start and end, the line's end
    offset = 0
    for line in body.splitlines(keepends=True):
        content = line.rstrip(b"\r\n")
        if content.startswith(b"data:"):
            data.append((offset, offset + (6 if content[5:6] == b" " else 5), offset + len(content), offset + len(line)))
        elif not content and data:
            events += _sse_event(body, data)
            data = []
        offset += len(line)
    return events + _sse_event(body, data) if data else events


def _sse_event(body: bytes, data: list[tuple[int, int, int, int]]) -> list[_Event]:
    """The event of ``data`` lines, if its JSON parses: written back to its first line's value, its other lines dropped."""
    try:
        value = json.loads(b"\n".join(body[start:end] for _, start, end, _ in data))
    except ValueError:
        return []
    if not isinstance(value, (dict, list)):
        return []
    first = data[0]
    return [_Event(value, -1, [(first[1], first[2]), *((line, end) for line, _, _, end in data[1:])])]


def _array_events(text: str) -> list[_Event] | None:
    """Each chunk of a JSON-array stream with its place in ``text``; None when ``text`` is no JSON array after all."""
    decoder = json.JSONDecoder()
    events = []
    at = text.index("[") + 1
    while True:
        at = _BETWEEN_CHUNKS.match(text, at).end()  # type: ignore[union-attr]  # (it matches the empty string)
        if text[at : at + 1] in ("]", ""):
            return events if text[at:].strip() == "]" else None
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            return None
        events.append(_Event(value, -1, [(at, end)]))
        at = end


def _spliced(text: Any, events: list[_Event], dumps: Callable[[Any], Any]) -> Any:
    """``text`` (bytes or str) with each changed event's JSON written over its first span and its other spans cut."""
    parts, kept = [], 0
    for event in events:
        if event.changed:
            for number, (start, end) in enumerate(event.spans):
                parts.append(text[kept:start])
                if number == 0:
                    parts.append(dumps(event.value))
                kept = end
    parts.append(text[kept:])
    return text[:0].join(parts)


def _walk(value: Any, path: tuple, at: int, fields: dict[tuple, list[tuple[int, Any, Any]]]) -> None:
    """Every string under ``value`` filed under its path (list positions dropped, stream indices kept)."""
    if isinstance(value, dict):
        path += tuple(f"{name}={value[name]}" for name in _INDICES if isinstance(value.get(name), int))
        for name, item in value.items():
            if isinstance(item, str):
                fields.setdefault((*path, name), []).append((at, value, name))
            elif isinstance(item, (dict, list)):
                _walk(item, (*path, name), at, fields)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                fields.setdefault(path, []).append((at, value, index))
            elif isinstance(item, (dict, list)):
                _walk(item, path, at, fields)


def _merged(spans: Iterable[Span]) -> list[Span]:
    """Spans in order, overlapping ones made one (standing for all of it: the first's replacement)."""
    merged: list[Span] = []
    for start, end, placeholder in sorted(spans, key=lambda span: (span[0], -span[1])):
        if end <= start:
            continue
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, placeholder))
    return merged


def _cut(pieces: list[str], spans: list[Span]) -> list[str]:
    """The pieces with each span's text taken out and its replacement put in the piece where the span starts."""
    out = []
    offset = 0
    for piece in pieces:
        end = offset + len(piece)
        parts, kept_to = [], offset
        for start, stop, placeholder in spans:
            if stop <= offset or start >= end:
                continue
            if start > kept_to:
                parts.append(piece[kept_to - offset : start - offset])
            if start >= offset:
                parts.append(placeholder)
            kept_to = max(kept_to, min(stop, end))
        parts.append(piece[kept_to - offset :])
        out.append("".join(parts))
        offset = end
    return out


def _frame_event(at: int, frame: Frame) -> _Event | None:
    """A frame's JSON: the JSON under its payload's base64 ``bytes`` (invoke_model_with_response_stream), else the payload."""
    try:
        payload = json.loads(frame.payload)
    except ValueError:
        return None
    inner = _base64_json(payload.get("bytes")) if isinstance(payload, dict) else None
    if inner is not None:
        return _Event(inner, at, payload=payload)
    return _Event(payload, at) if isinstance(payload, (dict, list)) else None


def _base64_json(encoded: Any) -> Any:
    if not isinstance(encoded, str):
        return None
    try:
        value = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, (dict, list)) else None


def _transformed(frame: Frame, transform: Callable[[bytes], bytes]) -> Frame:
    """The frame with ``transform`` applied to its payload, string headers, and the bytes under its base64 ``bytes``."""
    new = frame.with_strings(transform)
    if b'"bytes"' not in new.payload:
        return new
    try:
        payload = json.loads(new.payload)
        inner = base64.b64decode(payload["bytes"], validate=True)
    except (binascii.Error, ValueError, TypeError, KeyError):
        return new
    scrubbed = transform(inner)
    if scrubbed == inner:
        return new
    from .event_stream import Frame

    return Frame(new.headers, _dumps({**payload, "bytes": base64.b64encode(scrubbed).decode("ascii")}))


def _dumps(value: Any) -> bytes:
    """JSON as UTF-8; escaped to ASCII when a string holds half of a surrogate pair (a character cut between events)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")
