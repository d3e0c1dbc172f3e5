"""AWS's binary event stream (``application/vnd.amazon.eventstream``, Bedrock's ``converse_stream``), read
just far enough to find each event's JSON payload: listings want the usage its ``metadata`` event reports."""

from __future__ import annotations

import json
import struct
from typing import Any, Iterator

_PRELUDE = struct.Struct(">II")  # total length, headers length; then the prelude's CRC
_OVERHEAD = 16  # prelude (8) + its CRC (4) + the message's CRC (4)


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
