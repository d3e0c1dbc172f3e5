"""What every provider fake shares: a loopback server (fake_openai's, with another handler), the request log,
the key check, and the answer formats (JSON, SSE, raw byte frames).

A provider fake subclasses ProviderFake and implements ``answer(request, n) -> Reply``. Every answer carries
the request number ``n``, so a test can tell a live answer from a replayed one, unless the request's
``x-fake-answer: <text>`` header asks for that text; ``x-fake-piece-size: <n>`` streams it ``n`` characters per event.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fake_openai import LoopbackServing, Said, _Server  # noqa: F401  (Said: the fakes' x-fake-answer, x-fake-piece-size)
from fake_openai import _Handler as _OpenAIHandler


@dataclass
class Request:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """A JSON answer, or a stream: ``chunks`` written one by one with ``content_type``."""

    status: int = 200
    json: Any = None
    chunks: list[bytes] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class ProviderFake(LoopbackServing):
    """A provider's API on 127.0.0.1; subclasses answer, this class serves and logs."""

    api_key = "test-fake-key"

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[Request] = []
        self._count = 0
        self._lock = threading.Lock()

    def answer(self, request: Request, n: int) -> Reply:
        raise NotImplementedError

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self._count += 1
            n = self._count
            self.requests.append(request)
        return self.answer(request, n)

    def start(self) -> "ProviderFake":
        self.base_url = f"http://127.0.0.1:{self._serve(_Server(self, _Handler))}"
        return self


def sse(events: list[tuple[str | None, Any]], separator: str = "\n\n", said: Said = Said()) -> list[bytes]:
    """Server-sent events: ``event: name`` (when named) and ``data: <JSON>`` (over several lines, as ``said`` asks)."""
    return [((f"event: {name}\n" if name else "") + said.data(data) + separator).encode() for name, data in events]


def error(status: int, body: Any) -> Reply:
    return Reply(status=status, json=body)


def words(text: str) -> list[str]:
    """``text`` cut into stream deltas (a word and its trailing space each)."""
    pieces = text.split(" ")
    return [piece + " " for piece in pieces[:-1]] + pieces[-1:]


class _Handler(_OpenAIHandler):
    """fake_openai's handler (body reading, real-clock Date, silence) writing a provider fake's replies."""

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self._read_body(),
        )
        reply = self.server.fake._answer(request)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        if reply.chunks is None:
            data = json.dumps(reply.json).encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in reply.chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST
