"""A stdlib-only, OpenAI-compatible HTTP server so tests can drive the real `openai` SDK offline.

Answers are deterministic given the request, yet every answer carries the server's
request number (`#n` in the text, `...-n` in ids, `x-request-id: req_fake_n`), so a
test can tell a live answer from a replayed one.

Test switches:
- `fail_next(status)` queues error answers; models "error-400", "error-429" and
  "error-500" always fail with that status.
- Like the real API, every answer carries account headers (`openai-organization`, `openai-project`)
  and a `set-cookie`, which cassettes must never store.
- Binary answers: `POST /v1/audio/speech` (bytes that are not UTF-8) and
  `GET /v1/files/file-<size>/content` (`size` bytes, e.g. `file-20971520` for 20 MB).
- The JSON body is gzip-compressed when the client accepts gzip and the request
  carries the header `x-fake-gzip: 1` or the query parameter `fake_gzip=1`; with
  `x-fake-content-encoding: <value>` it is encoded as that header value says, in any
  case and stacked (`GZIP`, `identity, gzip`, `deflate, gzip`), as HTTP allows.
- `x-fake-answer: <text>` makes chat and Responses answer that text (a chat tool call's arguments become
  `{"q": <text>}`, or `{<name>: <text>}` with `x-fake-argument: <name>`) instead of the echo; with
  `x-fake-piece-size: <n>` a stream sends it, and a tool call's arguments, `n` characters per event, as real
  models stream tokens; with `x-fake-data-lines: several` each event's JSON is spread over several `data:` lines.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

CREATED = 1_700_000_000  # fixed timestamp keeps answers deterministic
MODEL_ERRORS = {
    "error-400": (400, "bad request for test"),
    "error-429": (429, "rate limited for test"),
    "error-500": (500, "server error for test"),
}


@dataclass(frozen=True)
class Said:
    """What a request's ``x-fake-answer`` and ``x-fake-piece-size`` headers ask a fake to answer, and how to stream it."""

    text: str | None = None
    size: int = 0
    argument: str | None = None  # the name a tool call's argument is given (x-fake-argument)
    several_lines: bool = False  # each event's JSON over several data: lines (x-fake-data-lines: several)

    @classmethod
    def of(cls, headers: dict[str, str]) -> "Said":
        several = headers.get("x-fake-data-lines") == "several"
        return cls(headers.get("x-fake-answer"), int(headers.get("x-fake-piece-size") or 0), headers.get("x-fake-argument"), several)

    def data(self, payload: Any) -> str:
        """A payload's ``data:`` line, or lines: SSE joins an event's data lines with newlines, so any JSON may span them."""
        if not self.several_lines:
            return f"data: {json.dumps(payload)}"
        return "\n".join(f"data: {line}" for line in json.dumps(payload, indent=1).splitlines())

    def pieces(self, text: str, default: Callable[[str], list[str]]) -> list[str]:
        """``text`` cut into pieces of ``size`` characters, or as ``default`` cuts it."""
        return [text[at : at + self.size] for at in range(0, len(text), self.size)] if self.size else default(text)


@dataclass
class _Reply:
    """What to answer: a JSON body, or pre-formatted server-sent events when `sse` is set."""

    status: int = 200
    json: Any = None
    sse: list[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class LoopbackServing:
    """A fake's server lifecycle: serve on an ephemeral 127.0.0.1 port from a daemon thread, stop for good."""

    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def _serve(self, server: _Server) -> int:
        """Serve ``server`` in the background; its port."""
        self._server = server
        # A short poll interval keeps stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return server.server_address[1]

    def stop(self) -> None:
        """Close the port and every open connection, so later requests are refused, not served."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.close_all()
        self._thread.join()
        self._server = self._thread = None

    def start(self) -> LoopbackServing:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FakeOpenAI(LoopbackServing):
    """An OpenAI-compatible server on 127.0.0.1 for tests; deterministic answers that still differ per request."""

    api_key: str = "sk-test-fake"

    def __init__(self, api_key: str = "sk-test-fake", tls: ssl.SSLContext | None = None) -> None:
        self.api_key = api_key
        self.tls = tls  # a server context: serve HTTPS instead of HTTP
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str]] = []
        self._count = 0  # never reset, so ids stay unique for the server's lifetime
        self._lock = threading.Lock()

    def start(self) -> FakeOpenAI:
        """Bind an ephemeral port and serve from a daemon thread."""
        server = _Server(self)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        scheme = "https" if self.tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self._serve(server)}/v1"
        return self

    def fail_next(self, status: int, times: int = 1, message: str = "injected failure for test") -> None:
        """Answer the next `times` requests, whatever they are, with an OpenAI-style error."""
        with self._lock:
            self._failures.extend([(status, message)] * times)

    def reset(self) -> None:
        """Forget logged requests and queued failures (the request counter keeps going)."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    def _answer(self, request: dict[str, Any]) -> tuple[int, _Reply]:
        """Log the request, then decide the answer; returns the request number too."""
        with self._lock:
            self._count += 1
            n = self._count
            self.requests.append(request)
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            return n, _error(*failure)
        given = request["headers"].get("authorization", "")
        if given != f"Bearer {self.api_key}":
            message = f"Incorrect API key provided: {given.removeprefix('Bearer ')}."
            return n, _error(401, message, code="invalid_api_key")
        method, path = request["method"], request["path"]
        if (method, path) == ("POST", "/v1/audio/transcriptions"):
            return n, _transcription(request, n)
        if (method, path) == ("POST", "/v1/audio/speech"):
            return n, _speech(request["json"] or {}, n)
        if method == "GET" and path.startswith("/v1/files/file-") and path.endswith("/content"):
            return n, _file_content(path, n)
        if method != "POST" or path not in _JSON_ROUTES:
            return n, _error(404, f"Invalid URL ({method} {path})")
        body = request["json"]
        if not isinstance(body, dict):
            return n, _error(400, "We could not parse the JSON body of your request.")
        if body.get("model") in MODEL_ERRORS:
            return n, _error(*MODEL_ERRORS[body["model"]])
        said = Said.of(request["headers"])
        if path in ("/v1/chat/completions", "/v1/responses"):
            return n, _JSON_ROUTES[path](body, n, said)  # type: ignore[call-arg]
        return n, _JSON_ROUTES[path](body, n)


class _Server(ThreadingHTTPServer):
    """Tracks open sockets so stop() can cut keep-alive connections the client has pooled."""

    daemon_threads = True

    def __init__(self, fake: Any, handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), handler or _Handler)
        self.fake = fake
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._sockets_lock:
            self._sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._sockets_lock:
            self._sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer are normal in tests; never print a traceback."""

    def close_all(self) -> None:
        self.server_close()
        with self._sockets_lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as httpx expects
    # The headers and the body go out in two writes: with Nagle's algorithm on, the body waits for the client's
    # delayed acknowledgement of the headers, ~40 ms an answer on Linux.
    disable_nagle_algorithm = True
    server: _Server

    def date_time_string(self, timestamp: float | None = None) -> str:
        # A real server runs elsewhere: its Date header must not read the test's frozen clock (llm_cache
        # would count that as the test reading it). freezegun leaves clock_gettime alone.
        return super().date_time_string(time.clock_gettime(time.CLOCK_REALTIME) if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests must not see server chatter on stdout/stderr."""

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        headers = {key.lower(): value for key, value in self.headers.items()}
        body = self._read_body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": headers,
            "json": parsed,
            "body": body,
        }
        n, reply = self.server.fake._answer(request)
        compress = headers.get("x-fake-content-encoding") or "gzip" in headers.get("accept-encoding", "") and (
            headers.get("x-fake-gzip") == "1" or parse_qs(url.query).get("fake_gzip") == ["1"]
        ) and "gzip"
        account = {"openai-organization": "org-fake-account", "openai-project": "proj_fake_project", "set-cookie": f"__cf_bm=fake-session-{n}; path=/; HttpOnly"}
        self._write(reply, {"x-request-id": f"req_fake_{n}", **account, **reply.headers}, compress)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # skip trailers
        return b"".join(chunks)

    def _write(self, reply: _Reply, headers: dict[str, str], compress: str | None) -> None:
        self.send_response(reply.status)
        for key, value in headers.items():
            self.send_header(key, value)
        if reply.raw is not None:
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(reply.raw)))
            self.end_headers()
            self.wfile.write(reply.raw)
            return
        if reply.sse is None:
            data = json.dumps(reply.json).encode()
            if compress:
                for coding in compress.lower().split(","):  # applied in the order listed
                    data = {"gzip": gzip.compress, "deflate": zlib.compress}.get(coding.strip(), bytes)(data)
                self.send_header("Content-Encoding", compress)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in reply.sse:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


def _error(status: int, message: str, code: str | None = None) -> _Reply:
    """An error body shaped like OpenAI's, which the SDK maps to its exception classes."""
    kind = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    if status == 429:
        code = code or "rate_limit_exceeded"
        # The SDK ignores `retry-after: 0` and backs off ~0.5 s; `retry-after-ms` makes retries instant.
        headers = {"retry-after": "0", "retry-after-ms": "1"}
    else:
        headers = {}
    error = {"message": message, "type": kind, "param": None, "code": code}
    return _Reply(status, {"error": error}, headers=headers)


def _text(content: Any) -> str:
    """Plain text of a message content: a string, or a list of parts with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _tokens(text: str) -> int:
    return len(text.split())


def _split(text: str) -> list[str]:
    """Three non-empty slices (for text of 3+ chars), so streams have several deltas."""
    size = len(text)
    return [text[size * k // 3 : size * (k + 1) // 3] for k in range(3)]


def _sse(payloads: list[dict[str, Any]], said: Said = Said()) -> list[str]:
    return [f"{said.data(payload)}\n\n" for payload in payloads]


def _chat(body: dict[str, Any], n: int, said: Said = Said()) -> _Reply:
    """Echo the last message (or say ``said.text``); call the first tool when tools are offered after a user turn."""
    messages = body.get("messages") or [{}]
    last = messages[-1]
    text = _text(last.get("content"))
    if last.get("role") == "tool":
        text = f"tool result {text}"
    tools = body.get("tools") or []
    call_tool = bool(tools) and last.get("role") == "user"
    choices = []
    for i in range(body.get("n") or 1):
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
        if call_tool:
            arguments = json.dumps({said.argument or "q": text if said.text is None else said.text})
            function = {"name": tools[0]["function"]["name"], "arguments": arguments}
            message["tool_calls"] = [{"id": f"call_fake_{n}_{i}", "type": "function", "function": function}]
        else:
            message["content"] = f"echo[{i}]: {text} #{n}" if said.text is None else said.text
        finish = "tool_calls" if call_tool else "stop"
        choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
    prompt = sum(_tokens(_text(m.get("content"))) for m in messages)
    completion = sum(_tokens(c["message"]["content"] or "") for c in choices)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    answer = {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion",
        "created": CREATED,
        "model": body.get("model"),
        "choices": choices,
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _Reply(sse=_sse(_chat_chunks(answer, include_usage, said), said) + ["data: [DONE]\n\n"])
    return _Reply(json=answer)


def _chat_chunks(answer: dict[str, Any], include_usage: bool, said: Said = Said()) -> list[dict[str, Any]]:
    """Replay a finished chat completion as OpenAI's chunk sequence."""
    head = {key: answer[key] for key in ("id", "created", "model", "system_fingerprint")}
    head["object"] = "chat.completion.chunk"
    if include_usage:
        head["usage"] = None  # OpenAI sends null usage on every chunk but the last

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    chunks = []
    for choice in answer["choices"]:
        index, message = choice["index"], choice["message"]
        chunks.append(chunk(index, {"role": "assistant", "content": "", "refusal": None}))
        if "tool_calls" in message:
            calls = [{"index": k, **call} for k, call in enumerate(message["tool_calls"])]
            if not said.size:
                chunks.append(chunk(index, {"tool_calls": calls}))
            for k, call in enumerate(calls if said.size else ()):  # the arguments a few characters at a time
                chunks.append(chunk(index, {"tool_calls": [{**call, "function": {**call["function"], "arguments": ""}}]}))
                chunks += [chunk(index, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]}) for piece in said.pieces(call["function"]["arguments"], _split)]
        else:
            chunks += [chunk(index, {"content": piece}) for piece in said.pieces(message["content"], _split)]
        chunks.append(chunk(index, {}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": answer["usage"]})
    return chunks


def _completions(body: dict[str, Any], n: int) -> _Reply:
    """Legacy completions: `n` choices per prompt, indexed prompt-major like OpenAI."""
    prompt = body.get("prompt", "")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    count = body.get("n") or 1
    choices = [
        {
            "index": p * count + j,
            "text": f"echo[{j}]: {text} #{n}",
            "logprobs": None,
            "finish_reason": "stop",
        }
        for p, text in enumerate(map(str, prompts))
        for j in range(count)
    ]
    used = sum(_tokens(str(text)) for text in prompts)
    made = sum(_tokens(choice["text"]) for choice in choices)
    answer = {
        "id": f"cmpl-fake-{n}",
        "object": "text_completion",
        "created": CREATED,
        "model": body.get("model"),
        "choices": choices,
        "usage": {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made},
    }
    return _Reply(json=answer)


def _vector(text: str, dimensions: int) -> list[float]:
    """Hash-derived floats that are exact in float32, so the float and base64 paths agree."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dimensions)
    return [(value - 32768) / 32768 for value in struct.unpack(f"<{dimensions}H", raw)]


def _embeddings(body: dict[str, Any], n: int) -> _Reply:
    """Deterministic vectors; base64 is float32 little-endian, as the SDK decodes it."""
    given = body.get("input", "")
    inputs = [given] if isinstance(given, str) or (given and isinstance(given[0], int)) else given
    dimensions = body.get("dimensions") or 8
    data = []
    for index, item in enumerate(inputs):
        vector: Any = _vector(item if isinstance(item, str) else json.dumps(item), dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    used = sum(_tokens(item) if isinstance(item, str) else len(item) for item in inputs)
    answer = {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
    return _Reply(json=answer)


def _responses(body: dict[str, Any], n: int, said: Said = Said()) -> _Reply:
    """Responses API: one assistant message echoing the last input item (or saying ``said.text``)."""
    given = body.get("input", "")
    last = given if isinstance(given, str) else (given or [{}])[-1]
    if isinstance(last, str):
        text = last
    else:
        text = _text(last.get("content")) or str(last.get("output", ""))
    answer_text = f"echo: {text} #{n}" if said.text is None else said.text
    part = {"type": "output_text", "text": answer_text, "annotations": [], "logprobs": []}
    item = {
        "id": f"msg_fake_{n}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    used, made = _tokens(text), _tokens(answer_text)
    usage = {
        "input_tokens": used,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": made,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": used + made,
    }
    answer = {
        "id": f"resp_fake_{n}",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }
    if body.get("stream"):
        return _Reply(sse=_response_events(answer, said))
    return _Reply(json=answer)


def _response_events(answer: dict[str, Any], said: Said = Said()) -> list[str]:
    """Replay a finished response as the typed, numbered SSE events of the Responses API."""
    item = answer["output"][0]
    part = item["content"][0]
    pending = {**answer, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    started = {**item, "status": "in_progress", "content": []}
    deltas = [
        ("response.output_text.delta", {**where, "delta": piece, "logprobs": []}) for piece in said.pieces(part["text"], _split)
    ]
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
        ("response.output_item.added", {"output_index": 0, "item": started}),
        ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
        *deltas,
        ("response.output_text.done", {**where, "text": part["text"], "logprobs": []}),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": answer}),
    ]
    return [
        f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': number, **data})}\n\n"
        for number, (kind, data) in enumerate(events)
    ]


def _form_files(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse multipart/form-data into {field: (filename, bytes)}; split by hand so binary parts stay exact."""
    boundary = content_type.partition("boundary=")[2].strip('"').encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = BytesHeaderParser().parsebytes(head)
        name = str(headers.get_param("name", header="content-disposition"))
        fields[name] = (headers.get_filename(), data.removesuffix(b"\r\n"))
    return fields


def _transcription(request: dict[str, Any], n: int) -> _Reply:
    """Audio transcription: reports what arrived, which is what recording tests care about."""
    fields = _form_files(request["headers"].get("content-type", ""), request["body"])
    if "file" not in fields:
        return _error(400, "Missing required parameter: 'file'.")
    filename, data = fields["file"]
    return _Reply(json={"text": f"transcribed {len(data)} bytes {filename} #{n}"})


def _speech(body: dict[str, Any], n: int) -> _Reply:
    """Text to speech: bytes that are not UTF-8 (a fake MP3 frame header, then every byte value)."""
    text = str(body.get("input", "")).encode()
    return _Reply(raw=b"\xff\xfb\x90\x00" + bytes(range(256)) + text + f"#{n}".encode())


def _file_content(path: str, n: int) -> _Reply:
    """File download of the size the id names (``file-20971520`` is 20 MB), ending in the request number."""
    size_text = path.removeprefix("/v1/files/file-").removesuffix("/content")
    if not size_text.isdigit():
        return _error(404, f"No such File object: {size_text}")
    tail = f"#{n}".encode()
    size = max(int(size_text), len(tail))
    return _Reply(raw=(b"0123456789abcdef\n" * (size // 17 + 1))[: size - len(tail)] + tail)


_JSON_ROUTES: dict[str, Callable[[dict[str, Any], int], _Reply]] = {
    "/v1/chat/completions": _chat,
    "/v1/completions": _completions,
    "/v1/embeddings": _embeddings,
    "/v1/responses": _responses,
}
