"""vcrpy's patchers (httpx, httpx2, requests, urllib3, aiohttp, …) answering from a Recorder.

vcrpy's stubs only call a handful of cassette methods; this adapter answers them from our O(1)
keyed store instead of vcrpy's Cassette, which scans every recording on each request.
The contract test in tests/test_vcrpy_contract.py fails loudly if that protocol changes.
"""

from __future__ import annotations

import threading
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

    __slots__ = ("body", "request", "occurrence", "found", "started")

    def __init__(self, body: Any, request: CanonicalRequest, occurrence: int, found: Interaction | None) -> None:
        self.body = body
        self.request = request
        self.occurrence = occurrence
        self.found = found
        self.started = time.perf_counter()


class VcrCassetteAdapter:
    """The slice of vcrpy's Cassette that its stubs use, backed by a Recorder."""

    custom_patches: tuple = ()
    skip_patchers: tuple = ()

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    @property
    def _path(self) -> str:
        """vcrpy names its connection classes and error messages after this."""
        return f"llm_replay:{self.recorder.cassette.describe()}" if self.recorder else "llm_replay"

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
        request = canonicalize(vcr_request.method, vcr_request.uri, body, headers.get("content-type") or "")
        occurrence = self.recorder.occurrence(request)
        pending = _Pending(body, request, occurrence, None)
        setattr(vcr_request, _STATE, pending)
        pending.found = self.recorder.lookup(request, occurrence)
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
        self.recorder.record(pending.request, pending.occurrence, RecordedResponse.from_vcr(vcr_response), latency)

    def filter_request(self, vcr_request: Any) -> Any:
        """Every request is ours to record."""
        return vcr_request

    def find_requests_with_most_matches(self, vcr_request: Any) -> list[tuple[Any, list, list]]:
        """aiohttp's redirect replay asks this; the request itself is the only candidate."""
        return [(vcr_request, [], [])]


class _ReusablePatchers:
    """vcrpy's patchers, built once per process over one adapter whose recorder changes per activation.

    Building them costs about 0.5 ms (vcrpy retries the import of every absent HTTP library, makes
    new connection classes and mock objects), which each test paid twice per activation; entering
    prebuilt ones costs a few microseconds each. Patches still come off between activations.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._adapter: VcrCassetteAdapter | None = None
        self._patchers: list[Any] = []

    def claim(self, recorder: Recorder) -> tuple[VcrCassetteAdapter, list[Any]] | None:
        """The shared adapter and patchers, pointed at ``recorder``; None while another activation holds them."""
        with self._lock:
            if self._busy:
                return None
            self._busy = True
        if self._adapter is None:
            from vcr.patch import CassettePatcherBuilder

            adapter = VcrCassetteAdapter(recorder)
            try:
                self._patchers = list(CassettePatcherBuilder(adapter).build())
            except BaseException:
                self._busy = False
                raise
            self._adapter = adapter
        self._adapter.recorder = recorder
        return self._adapter, self._patchers

    def release(self) -> None:
        """After the patches came off: forget the recorder and the connections vcrpy tracked for it."""
        from vcr.patch import ConnectionRemover

        for patcher in self._patchers:
            if isinstance(patcher, ConnectionRemover):
                # A fresh remover starts empty; this one has closed its connections already.
                patcher._connection_pool_to_connections.clear()
        self._adapter.recorder = None  # type: ignore[union-attr]
        with self._lock:
            self._busy = False


_REUSABLE = _ReusablePatchers()


@contextmanager
def intercepting(recorder: Recorder) -> Iterator[VcrCassetteAdapter]:
    """Route every HTTP library vcrpy patches through ``recorder`` while the block runs."""
    claimed = _REUSABLE.claim(recorder)
    if claimed is None:
        # Nested (use_cassette inside a test's llm_cache): its own patchers on top, as vcrpy nests cassettes.
        from vcr.patch import CassettePatcherBuilder

        adapter = VcrCassetteAdapter(recorder)
        patchers: Any = CassettePatcherBuilder(adapter).build()
    else:
        adapter, patchers = claimed
    try:
        with ExitStack() as stack:
            for patcher in patchers:
                stack.enter_context(patcher)
            yield adapter
    finally:
        if claimed is not None:
            _REUSABLE.release()
