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

from ..engine.recorder import Recorder
from ..errors import CassetteError, CassetteMiss
from ..model.fingerprint import CanonicalRequest, canonicalize
from ..model.interaction import Interaction, Key, RecordedResponse
from .placeholders import PLACEHOLDER_KEY

_STATE = "_llm_replay_state"


class _Pending:
    """What one in-flight request was matched to; kept on vcrpy's request object between stub calls."""

    __slots__ = ("body", "request", "key", "found", "started")

    def __init__(self, body: Any, request: CanonicalRequest, key: Key, found: Interaction | None) -> None:
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

    @property
    def _path(self) -> str:
        """vcrpy names its connection classes and error messages after this."""
        return f"llm_replay:{self.recorder.cassette.describe()}" if self.recorder else "llm_replay"

    @property
    def write_protected(self) -> bool:
        """Replay and adopt never go live (a miss has already raised CassetteMiss by then)."""
        return self.recorder.mode.offline

    def _pending(self, vcr_request: Any) -> _Pending:
        __tracebackhide__ = True
        pending = getattr(vcr_request, _STATE, None)
        body = vcr_request._body
        if pending is not None and pending.body is body:
            return pending
        headers = vcr_request.headers
        request, key = self.recorder.keyed(canonicalize(vcr_request.method, vcr_request.uri, body, headers.get("content-type") or ""))
        pending = _Pending(body, request, key, None)
        setattr(vcr_request, _STATE, pending)
        pending.found = self.recorder.lookup(request, key)
        if pending.found is None and _carries_placeholder_key(headers):
            miss = CassetteMiss(_PLACEHOLDER_MISS.format(mode=self.recorder.mode, url=request.url))
            self.recorder.count_miss(miss)
            raise miss
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


_ABSENT = object()
_PLACEHOLDER_MISS = (
    "not sent: this test records (mode '{mode}') but the request to {url} carries llm_replay's placeholder "
    "API key. The session replays (CI is set, or --llm-mode=replay), so llm_replay gave the SDK key variables "
    "a placeholder before the client was built, and a live call would only record a 401. Run the session with "
    "the real key and --llm-mode=record (e.g. OPENAI_API_KEY=sk-... pytest --llm-mode=record), or let this "
    "test replay."
)


def _carries_placeholder_key(headers: Any) -> bool:
    return any(PLACEHOLDER_KEY in str(value) for value in headers.values())


class _ReusablePatchers:
    """vcrpy's patches, built once per process over one adapter whose recorder changes per activation.

    Building them costs about 0.5 ms (vcrpy retries the import of every absent HTTP library, makes
    new connection classes and mock objects) and entering them through ``mock.patch`` another 60 µs,
    which each test paid. Built once and applied as plain ``setattr`` they cost a few µs. Patches
    still come off after every activation, so tests without llm_cache are untouched.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self.owner: int | None = None  # the thread whose activation holds the patches
        self._adapter: VcrCassetteAdapter | None = None
        # Each step is (target, attribute, replacement) to set, or a context manager to enter (vcrpy's ConnectionRemover).
        self._steps: list[Any] = []

    def claim(self, recorder: Recorder) -> VcrCassetteAdapter | None:
        """The shared adapter, pointed at ``recorder``; None while another activation holds it."""
        with self._lock:
            if self._busy:
                return None
            self._busy = True
            self.owner = threading.get_ident()
        try:
            if self._adapter is None:
                adapter = VcrCassetteAdapter(recorder)
                self._steps = _steps(adapter)
                self._adapter = adapter
        except BaseException:
            self._busy = False
            raise
        self._adapter.recorder = recorder
        return self._adapter

    @contextmanager
    def applied(self) -> Iterator[None]:
        """vcrpy's patches in its order for the block, undone in reverse (as its ExitStack does)."""
        undo: list[Any] = []
        try:
            for step in self._steps:
                if isinstance(step, tuple):
                    target, attribute, replacement = step
                    undo.append((target, attribute, vars(target).get(attribute, _ABSENT)))
                    setattr(target, attribute, replacement)
                else:
                    step.__enter__()
                    undo.append(step)
            yield
        finally:
            failure: BaseException | None = None
            for step in reversed(undo):
                if not isinstance(step, tuple):
                    try:
                        step.__exit__(None, None, None)
                    except BaseException as error:  # every patch must still come off; the first error is raised after
                        failure = failure or error
                    continue
                target, attribute, original = step
                if original is _ABSENT:
                    delattr(target, attribute)  # it was inherited: the class's own copy goes
                else:
                    setattr(target, attribute, original)
            if failure is not None:
                raise failure

    def release(self) -> None:
        """After the patches came off: forget the recorder."""
        self._adapter.recorder = None  # type: ignore[union-attr]
        with self._lock:
            self._busy = False
            self.owner = None


def _steps(adapter: VcrCassetteAdapter) -> list[Any]:
    """What vcrpy's CassettePatcherBuilder would enter: plain ``mock.patch.object`` as (target, attribute,
    replacement) triples, anything else kept as the context manager it is."""
    from unittest import mock

    from vcr.patch import CassettePatcherBuilder, ConnectionRemover

    patch_type = type(mock.patch.object(object, "__doc__", None))
    steps: list[Any] = []
    for patcher in CassettePatcherBuilder(adapter).build():
        if type(patcher) is patch_type and _plain(patcher):
            steps.append((patcher.getter(), patcher.attribute, patcher.new))
        elif isinstance(patcher, ConnectionRemover):
            steps.append(_ReusedConnectionRemover(patcher))
        else:
            steps.append(patcher)
    return steps


def _plain(patcher: Any) -> bool:
    """A ``mock.patch.object(target, name, new)`` with nothing else to do on entry."""
    extras = (patcher.new_callable, patcher.autospec, patcher.spec, patcher.spec_set, patcher.kwargs, patcher.additional_patchers, patcher.create)
    return not any(extras)


class _ReusedConnectionRemover:
    """vcrpy's ConnectionRemover, emptied after each exit as a fresh one would start (it closed them already)."""

    def __init__(self, remover: Any) -> None:
        self._remover = remover

    def __enter__(self) -> None:
        self._remover.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._remover.__exit__(*exc_info)
        finally:
            self._remover._connection_pool_to_connections.clear()


_REUSABLE = _ReusablePatchers()


@contextmanager
def intercepting(recorder: Recorder) -> Iterator[VcrCassetteAdapter]:
    """Route every HTTP library vcrpy patches through ``recorder`` while the block runs."""
    adapter = _REUSABLE.claim(recorder)
    if adapter is None and _REUSABLE.owner != threading.get_ident():
        # The patches are process-wide: a second thread's cassette would answer the first thread's calls.
        raise CassetteError(
            f"a cassette is already active in another thread; {recorder.cassette.describe()} cannot be activated "
            "alongside it (HTTP interception is process-wide). Activate one cassette around all the threads' work"
        )
    if adapter is None:
        # Nested (use_cassette inside a test's llm_cache): its own patchers on top, as vcrpy nests cassettes.
        from vcr.patch import CassettePatcherBuilder

        nested = VcrCassetteAdapter(recorder)
        with ExitStack() as stack:
            for patcher in CassettePatcherBuilder(nested).build():
                stack.enter_context(patcher)
            yield nested
        return
    try:
        with _REUSABLE.applied():
            yield adapter
    finally:
        _REUSABLE.release()
