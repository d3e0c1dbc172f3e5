"""AWS's binary event stream (``application/vnd.amazon.eventstream``, Bedrock's ``converse_stream`` and
``invoke_model_with_response_stream``): each event's JSON payload found for listings (the usage its ``metadata``
event reports), and frames taken apart and put back together for the scrub.

A frame is a prelude (total length, headers length: 4 bytes each, big-endian), the prelude's CRC32, the headers,
the payload, and a CRC32 of everything before it; botocore checks both CRCs and refuses a frame that fails.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Callable, Iterator

_PRELUDE = struct.Struct(">II")  # total length, headers length; then the prelude's CRC
_CRC = struct.Struct(">I")
_OVERHEAD = 16  # prelude (8) + its CRC (4) + the message's CRC (4)
_STRING = 7  # a header value's type: a UTF-8 string (2-byte length)
# bytes of the value after a header's type byte, by type: true, false, byte, short, int, long, (array), (string), timestamp, uuid
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


def event_payloads(body: bytes) -> Iterator[Any]:
    """Each message's payload parsed as JSON, in order; stops at the first frame that does not add up
    (a body that is not an event stream yields nothing). CRCs are not checked: the recording is trusted."""
    offset = 0
    while offset + _OVERHEAD <= len(body):
        total, headers = _PRELUDE.unpack_from(body, offset)
        if total < _OVERHEAD + headers or offset + total > len(body):
            return
        payload = body[offset + 12 + headers : offset + total - 4]
        try:
            yield json.loads(payload)
        except ValueError:
            pass  # an event without a JSON payload
        offset += total


class Frame:
    """One message of an event stream: its headers as they are written, and its payload.

    A plain class, not a dataclass: the scrub module imports this one with the plugin, and generating a dataclass's
    methods costs every pytest session an import's worth of time."""

    __slots__ = ("headers", "payload")

    def __init__(self, headers: bytes, payload: bytes) -> None:
        self.headers, self.payload = headers, payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (self.headers, self.payload) == (other.headers, other.payload)

    __hash__ = None  # type: ignore[assignment]

    def header(self, name: str) -> str | None:
        """The value of a string header (``:event-type``, ``:message-type``), or None."""
        for header_name, kind, value in _headers(self.headers) or ():
            if header_name == name.encode() and kind == _STRING:
                return value.decode("utf-8", "replace")
        return None

    def with_strings(self, transform: Callable[[bytes], bytes]) -> "Frame":
        """The frame with ``transform`` applied to its payload and to each string header's value (lengths rewritten)."""
        headers = bytearray()
        for name, kind, value in _headers(self.headers) or ():
            if kind == _STRING:
                value = transform(value)
                value = struct.pack(">H", len(value)) + value
            headers += bytes([len(name)]) + name + bytes([kind]) + value
        return Frame(bytes(headers), transform(self.payload))


def frames(body: bytes) -> list[Frame] | None:
    """Every frame of ``body``, or None when it is not an event stream from its first byte to its last (a frame
    whose lengths do not add up or whose prelude's CRC fails, bytes left over, headers that do not parse)."""
    found = []
    offset = 0
    while offset < len(body):
        if offset + _OVERHEAD > len(body):
            return None
        total, length = _PRELUDE.unpack_from(body, offset)
        if total < _OVERHEAD + length or offset + total > len(body) or _CRC.unpack_from(body, offset + 8)[0] != zlib.crc32(body[offset : offset + 8]):
            return None
        headers = body[offset + 12 : offset + 12 + length]
        if _headers(headers) is None:
            return None
        found.append(Frame(headers, body[offset + 12 + length : offset + total - 4]))
        offset += total
    return found if found else None


def encoded(stream: list[Frame]) -> bytes:
    """The frames written as an event stream, lengths and both CRCs computed afresh, as botocore checks them."""
    out = bytearray()
    for frame in stream:
        prelude = _PRELUDE.pack(_OVERHEAD + len(frame.headers) + len(frame.payload), len(frame.headers))
        message = prelude + _CRC.pack(zlib.crc32(prelude)) + frame.headers + frame.payload
        out += message + _CRC.pack(zlib.crc32(message))
    return bytes(out)


def _headers(block: bytes) -> list[tuple[bytes, int, bytes]] | None:
    """(name, type, value) of each header, the value as written (a byte array with its length) but a string's without
    its length; None when the block does not parse."""
    headers = []
    offset = 0
    while offset < len(block):
        size = block[offset]
        name = block[offset + 1 : offset + 1 + size]
        offset += 1 + size
        if offset >= len(block):
            return None
        kind = block[offset]
        offset += 1
        if kind in _FIXED:
            length = _FIXED[kind]
        elif kind in (6, _STRING) and offset + 2 <= len(block):
            length = 2 + struct.unpack_from(">H", block, offset)[0]
        else:
            return None
        if offset + length > len(block):
            return None
        value = block[offset : offset + length]
        headers.append((name, kind, value[2:] if kind == _STRING else value))
        offset += length
    return headers
