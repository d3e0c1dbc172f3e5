"""AWS Bedrock Runtime's Converse API on loopback: ``POST /model/<model id>/converse`` (JSON) and
``/converse-stream`` (AWS's binary event stream, ``application/vnd.amazon.eventstream``); and
``/invoke-with-response-stream`` for an Anthropic model (its Messages events, each as base64 in a ``chunk`` frame's
``{"bytes": ...}``).

The key check is SigV4's: the ``Authorization`` header must name the fake's access key id (the signature
itself is not verified; it changes with every request's time).
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from typing import Any
from urllib.parse import unquote

from .anthropic_api import _events as anthropic_events
from .server import ProviderFake, Reply, Request, Said, error, words

_ROUTE = re.compile(r"/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream|invoke-with-response-stream)")


class FakeBedrock(ProviderFake):
    api_key = "AKIDFAKEACCESSKEY"  # the access key id; any secret key signs
    secret_key = "fake-secret-access-key"

    def answer(self, request: Request, n: int) -> Reply:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith(f"AWS4-HMAC-SHA256 Credential={self.api_key}/"):
            return error(403, {"message": "The security token included in the request is invalid."})
        route = _ROUTE.fullmatch(request.path)
        if route is None:
            return error(404, {"message": f"no route {request.path}"})
        said = Said.of(request.headers)
        text = f"answer #{n} to: {_last_text(request.json['messages'])} ({unquote(route['model'])})" if said.text is None else said.text
        usage = {"inputTokens": 9, "outputTokens": 5, "totalTokens": 14}
        if route["operation"] == "invoke-with-response-stream":
            message = {"id": f"msg_bdrk_fake_{n}", "type": "message", "role": "assistant", "model": unquote(route["model"]), "content": [{"type": "text", "text": text}],
                       "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 5}}
            chunks = [event_frame("chunk", {"bytes": base64.b64encode(json.dumps(data).encode()).decode()}) for _, data in anthropic_events(message, said)]
            return Reply(chunks=chunks, content_type="application/vnd.amazon.eventstream")
        if route["operation"] == "converse":
            return Reply(json={
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 100},
            }, headers={"x-amzn-RequestId": f"fake-request-{n}"})
        events = [("messageStart", {"role": "assistant"})]
        events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}) for piece in said.pieces(text, words)]
        events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "end_turn"})]
        events.append(("metadata", {"usage": usage, "metrics": {"latencyMs": 100}}))
        return Reply(chunks=[event_frame(name, payload) for name, payload in events], content_type="application/vnd.amazon.eventstream")


def _last_text(messages: list[dict[str, Any]]) -> str:
    content = messages[-1]["content"]
    return content if isinstance(content, str) else " ".join(block.get("text", "") for block in content)


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """One frame of AWS's event stream: prelude (total length, headers length, CRC32), string headers, JSON payload, CRC32."""
    headers = b"".join(
        struct.pack("!B", len(name)) + name.encode() + struct.pack("!BH", 7, len(value)) + value.encode()
        for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event"))
    )
    body = json.dumps({**payload, "p": "abcdefgh"}).encode()  # the real service pads payloads with "p"
    prelude = struct.pack("!II", 12 + len(headers) + len(body) + 4, len(headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + headers + body
    return message + struct.pack("!I", zlib.crc32(message))
