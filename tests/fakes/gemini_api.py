"""Google's Gemini API on loopback: ``POST /{v1,v1beta}/models/<model>:generateContent`` (JSON) and
``:streamGenerateContent?alt=sse`` (SSE of ``data:`` events only, separated by ``\\r\\n\\r\\n``, as the real API);
without ``alt=sse``, as the real API, a JSON array of the same chunks, written one by one (``[{…}\\n,\\r\\n{…}\\n]``).

The key goes in the ``x-goog-api-key`` header or the ``key`` query parameter.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .server import ProviderFake, Reply, Request, Said, error, sse, words

_ROUTE = re.compile(r"/(?:v1|v1beta)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)")


class FakeGemini(ProviderFake):
    api_key = "AIza-test-fake"

    def answer(self, request: Request, n: int) -> Reply:
        if self.api_key not in (request.headers.get("x-goog-api-key"), request.query.get("key")):
            return error(400, {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}})
        route = _ROUTE.fullmatch(request.path)
        if route is None:
            return error(404, {"error": {"code": 404, "message": f"no route {request.path}", "status": "NOT_FOUND"}})
        said = Said.of(request.headers)
        text = f"answer #{n} to: {_last_text(request.json['contents'])}" if said.text is None else said.text
        if route["method"] == "generateContent":
            return Reply(json=_chunk(route["model"], text, final=True))
        pieces = said.pieces(text, words)
        chunks = [_chunk(route["model"], piece, final=index == len(pieces) - 1) for index, piece in enumerate(pieces)]
        if request.query.get("alt") != "sse":
            written = [json.dumps(chunk, indent=2).encode() for chunk in chunks]
            return Reply(chunks=[b"[" + written[0], *(b"\n,\r\n" + chunk for chunk in written[1:]), b"\n]"])
        return Reply(chunks=sse([(None, chunk) for chunk in chunks], separator="\r\n\r\n", said=said), content_type="text/event-stream")


def _last_text(contents: list[dict[str, Any]]) -> str:
    return " ".join(part.get("text", "") for part in contents[-1]["parts"])


def _chunk(model: str, text: str, final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if final:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 5, "totalTokenCount": 12},
        "modelVersion": model,
        "responseId": "fake-response",
    }
