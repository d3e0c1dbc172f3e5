"""vcrpy's patchers (httpx, httpx2, requests, urllib3, aiohttp, …) answering from a Recorder.

vcrpy's stubs only call a handful of cassette methods; this adapter answers them from our O(1)
keyed store instead of vcrpy's Cassette, which scans every recording on each request.
The contract test in tests/test_vcrpy_contract.py fails loudly if that protocol changes.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

from .fingerprint import CanonicalRequest, canonicalize
from .interaction import Interaction, RecordedResponse
from .recorder import Recorder
from .settings import Mode

_STATE = "_llm_replay_state"


class _Pending:
    """What one in-flight request was matched to; kept on vcrpy's request object between stub calls."""

    __slots__ = ("body", "request", "key", "found", "started")

    def __init__(self, body: Any, request: CanonicalRequest, key: tuple[str, int], found: Interaction | None) -> None:
        self.body = body
        self.request = request
        self.key = key
        self.found = found
        self.started = time.perf_counter()


class VcrCassetteAdapter:
    """The slice of vcrpy's Cassette that its stubs use, backed by a Recorder."""

    custom_patches: tuple = ()
    skip_patchers: tuple = ()

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._path = f"llm_replay:{recorder.cassette.describe()}"

    @property
    def write_protected(self) -> bool:
        """Replay never goes live (a miss has already raised CassetteMiss by then)."""
        return self.recorder.mode is Mode.REPLAY

    def _pending(self, vcr_request: Any) -> _Pending:
        __tracebackhide__ = True
        pending = getattr(vcr_request, _STATE, None)
        body = vcr_request._body
        if pending is not None and pending.body is body:
            return pending
        headers = vcr_request.headers
        # Scrubbed before the lookup, so the key is the one the cassette stores (no secret value in it).
        request = self.recorder.cassette.scrubber.request(canonicalize(vcr_request.method, vcr_request.uri, body, headers.get("content-type") or ""))
        key = self.recorder.key(request)
        pending = _Pending(body, request, key, None)
        setattr(vcr_request, _STATE, pending)
        pending.found = self.recorder.lookup(request, key)
        return pending

    def can_play_response_for(self, vcr_request: Any) -> bool:
        """Whether a recording answers this request (raises CassetteMiss on a strict miss)."""
        __tracebackhide__ = True
        return self._pending(vcr_request).found is not None

    def play_response(self, vcr_request: Any) -> dict[str, Any]:
        """The recorded response in vcrpy's shape."""
        found = self._pending(vcr_request).found
        assert found is not None, "vcrpy asked to play a response it was told does not exist"
        return found.response.as_vcr()

    def append(self, vcr_request: Any, vcr_response: dict[str, Any]) -> None:
        """A live answer arrived: record it."""
        pending = self._pending(vcr_request)
        latency = time.perf_counter() - pending.started
        self.recorder.record(pending.request, pending.key, RecordedResponse.from_vcr(vcr_response), latency)

    def filter_request(self, vcr_request: Any) -> Any:
        """Every request is ours to record."""
        return vcr_request

    def find_requests_with_most_matches(self, vcr_request: Any) -> list[tuple[Any, list, list]]:
        """aiohttp's redirect replay asks this; the request itself is the only candidate."""
        return [(vcr_request, [], [])]


@contextmanager
def intercepting(recorder: Recorder) -> Iterator[VcrCassetteAdapter]:
    """Route every HTTP library vcrpy patches through ``recorder`` while the block runs."""
    from vcr.patch import CassettePatcherBuilder

    adapter = VcrCassetteAdapter(recorder)
    with ExitStack() as stack:
        for patcher in CassettePatcherBuilder(adapter).build():
            stack.enter_context(patcher)
        yield adapter
