"""Value objects: a recorded response, and one interaction (request + response + metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

from .fingerprint import CanonicalRequest

Key = tuple[str, int]  # (fingerprint, occurrence): where an interaction lives in a cassette


class OwnerChange(NamedTuple):
    """Tests that became owners of a recording, and tests that stopped owning it, in one run.

    A change, not the new owner list: applied to the owners stored when it is written, so two sessions that
    finish at once each keep the owners they add.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def applied_to(self, owners: Iterable[str], scrub: Callable[[str], str]) -> list[str]:
        """The owners after this change (test ids scrubbed as the store keeps them), sorted."""
        return sorted((set(owners) | {scrub(test) for test in self.added}) - {scrub(test) for test in self.removed})


def utc_stamp(instant: datetime | None = None) -> str:
    """How a recording's time is stored (``recorded_at``), in UTC: now to the millisecond (pruning compares it with
    when a run began, and runs follow each other within a second), or a given instant (a Date header) to the second."""
    if instant is None:
        return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return instant.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RecordedResponse:
    """A response as stored: decoded body (gzip/deflate/br removed), status and headers kept."""

    status: int
    reason: str
    headers: Mapping[str, list[str]]
    body: bytes

    @classmethod
    def from_vcr(cls, vcr_response: Mapping[str, Any]) -> "RecordedResponse":
        """The response in vcrpy's shape, every Content-Encoding undone (the cassette scrubs it when storing it)."""
        from .content_coding import decoded

        raw = vcr_response.get("body", {}).get("string") or b""
        headers = {name: [str(v) for v in (values if isinstance(values, list) else [values])] for name, values in vcr_response["headers"].items()}
        headers, body = decoded(headers, raw.encode() if isinstance(raw, str) else bytes(raw))
        status = vcr_response["status"]
        return cls(status=int(status["code"]), reason=str(status.get("message") or ""), headers=headers, body=body)

    def as_vcr(self) -> dict[str, Any]:
        """The shape vcrpy's stubs build a library response from."""
        return {"status": {"code": self.status, "message": self.reason}, "headers": self.headers, "body": {"string": self.body}}

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON (SSE streams, text, bytes)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class Interaction:
    """One request and its response, keyed by fingerprint and occurrence."""

    fingerprint: str
    request_json: str
    response: RecordedResponse
    occurrence: int = 0
    recorded_at: str = ""
    latency_ms: float | None = None
    tests: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, request: CanonicalRequest, response: RecordedResponse, fingerprint: str | None = None, **metadata: Any) -> "Interaction":
        """A new interaction for a request just answered, stored whole under ``fingerprint``
        (its key under the match rules; by default the request's own fingerprint)."""
        return cls(fingerprint=fingerprint or request.fingerprint, request_json=request.to_json(), response=response, **metadata)

    @property
    def key(self) -> Key:
        """Where the interaction lives in a cassette."""
        return self.fingerprint, self.occurrence

    @cached_property
    def request(self) -> CanonicalRequest:
        """The canonical request, parsed only when someone needs it (misses, listings)."""
        return CanonicalRequest.from_json(self.request_json)

    def usage(self) -> tuple[int | None, int | None]:
        """Input and output tokens the answer reports (None where it does not), for chat, completions,
        Responses, Anthropic, Gemini and Bedrock alike, whole JSON or streamed (SSE, or AWS's binary event
        stream: the usage in its events; the last count wins)."""
        data = self.response.json()
        if data is not None:
            events: Iterator[Any] = iter(data if isinstance(data, list) else [data])  # a list: Gemini's stream without SSE
        elif self.response.body[:1] == b"\x00":  # an event stream's first length; SSE and text start printable
            from .event_stream import event_payloads

            events = event_payloads(self.response.body)
        else:
            events = sse_events(self.response.body)
        found_in = found_out = None
        for event in events:
            for usage in _usages(event):
                found_in = next((usage[name] for name in _INPUT_TOKENS if name in usage), found_in)
                found_out = next((usage[name] for name in _OUTPUT_TOKENS if name in usage), found_out)
        return (found_in if isinstance(found_in, int) else None, found_out if isinstance(found_out, int) else None)


def stored_interaction(
    fingerprint: str,
    occurrence: int,
    request_json: str,
    response: tuple[int, str, Mapping[str, list[str]], bytes],
    recorded_at: str,
    latency_ms: float | None,
    tests: tuple[str, ...],
) -> Interaction:
    """The Interaction a cassette's row holds (``response``: status, reason, headers, body), its values checked by the
    store. Built without the frozen dataclasses' ``__init__``, which sets each field through ``object.__setattr__``:
    ~26 K instructions for an Interaction and its RecordedResponse against ~4 K, and every replay reads one. The
    result is equal, hashable and replaceable like any other."""
    recorded = object.__new__(RecordedResponse)
    recorded.__dict__.update(zip(_RESPONSE_FIELDS, response))
    interaction = object.__new__(Interaction)
    interaction.__dict__.update(
        fingerprint=fingerprint, request_json=request_json, response=recorded, occurrence=occurrence, recorded_at=recorded_at, latency_ms=latency_ms, tests=tests
    )
    return interaction


_RESPONSE_FIELDS = ("status", "reason", "headers", "body")


# Each provider's names for the counts: OpenAI chat/completions, Responses and Anthropic, Gemini, Bedrock.
_INPUT_TOKENS = ("prompt_tokens", "input_tokens", "promptTokenCount", "inputTokens")
_OUTPUT_TOKENS = ("completion_tokens", "output_tokens", "candidatesTokenCount", "outputTokens")


def sse_events(body: bytes) -> Iterator[Any]:
    """The JSON of each ``data:`` line of a server-sent-events body (a streamed answer), in order."""
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("data:"):
            try:
                yield json.loads(line[5:])
            except ValueError:
                continue  # [DONE] and keep-alives


def _usages(event: Any) -> Iterator[dict]:
    """The usage at the top of an answer or stream event (``usage``: chat, Anthropic deltas, Bedrock;
    ``usageMetadata``: Gemini), or in its response/message (Responses events, Anthropic's message_start)."""
    if not isinstance(event, dict):
        return
    for holder in (event, event.get("response"), event.get("message")):
        if isinstance(holder, dict):
            for name in ("usage", "usageMetadata"):
                if isinstance(holder.get(name), dict):
                    yield holder[name]
