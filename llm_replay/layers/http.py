"""vcrpy's patchers (httpx, httpx2, requests, urllib3, aiohttp, …) answering from a Recorder.

vcrpy's stubs only call a handful of cassette methods; this adapter answers them from our O(1)
keyed store instead of vcrpy's Cassette, which scans every recording on each request.
The contract test in tests/test_vcrpy_contract.py fails loudly if that protocol changes.
vcrpy's patches are process-wide; which recorder answers a request is decided per context (contextvars),
so threads and asyncio tasks can each replay or record their own cassette at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextvars import ContextVar, Token
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

from ..engine.recorder import Recorder
from ..engine.settings import Mode
from ..errors import CassetteError, CassetteMiss
from ..model.fingerprint import CanonicalRequest, canonicalize
from ..model.interaction import Interaction, Key, RecordedResponse
from ..model.scrub import sent_credentials
from .late_imports import defer_vcr_package_init, keep_originals_again, watch_late_imports, withholding
from .placeholders import PLACEHOLDER_KEY

_STATE = "_llm_replay_state"


class _Pending:
    """What one in-flight request was matched to, and by which recorder; kept on vcrpy's request object between stub calls."""

    __slots__ = ("body", "recorder", "request", "key", "found", "ignored", "started")

    def __init__(self, body: Any, recorder: Recorder | None, request: Any, key: Any, found: Interaction | None, ignored: bool = False) -> None:
        self.body = body
        self.recorder = recorder
        self.request: CanonicalRequest = request
        self.key: Key = key
        self.found = found
        self.ignored = ignored
        self.started = time.perf_counter()


class VcrCassetteAdapter:
    """The slice of vcrpy's Cassette that its stubs use, answering each request from the recorder of its context."""

    custom_patches: tuple = ()
    skip_patchers: tuple = ()

    @property
    def recorder(self) -> Recorder | None:
        """The recorder this thread or task activated; else the only active one (threads the test started); None
        when nothing is active (the patches left on between two tests: the request passes, unrecorded)."""
        current = _CURRENT.get()
        if current is not None and _REUSABLE.is_active(current):
            return current
        return _REUSABLE.fallback()

    @property
    def _path(self) -> str:
        """vcrpy names its connection classes and error messages after this."""
        recorder = _CURRENT.get()
        return f"llm_replay:{recorder.cassette.describe()}" if recorder else "llm_replay"

    @property
    def write_protected(self) -> bool:
        """Replay, adopt and verify never record (a miss has already raised CassetteMiss by then)."""
        recorder = self.recorder
        return recorder is not None and recorder.mode.fails_on_miss

    def _pending(self, vcr_request: Any) -> _Pending:
        __tracebackhide__ = True
        pending = getattr(vcr_request, _STATE, None)
        body = vcr_request._body
        if pending is not None and pending.body is body:
            return pending
        recorder = self.recorder
        ignored = recorder is None or (recorder.ignored_hosts is not None and recorder.ignored_hosts.matches(vcr_request.host, vcr_request.port))
        if ignored:  # llm_ignore_hosts, or no cassette active: always live, never recorded nor replayed
            pending = _Pending(body, recorder, None, None, None, ignored=True)
            setattr(vcr_request, _STATE, pending)
            return pending
        content_type = vcr_request.content_type if type(vcr_request) is HttpxRequest else vcr_request.headers.get("content-type") or ""
        sent = body if body is None or isinstance(body, (bytes, str)) else _keyable(body)
        request, key = recorder.keyed(canonicalize(vcr_request.method, vcr_request.uri, sent, content_type))
        pending = _Pending(body, recorder, request, key, None)
        setattr(vcr_request, _STATE, pending)
        pending.found = recorder.lookup(request, key)
        if pending.found is None and _carries_placeholder_key(vcr_request.headers):
            miss = CassetteMiss(_PLACEHOLDER_MISS.format(mode=recorder.mode, url=request.url))
            recorder.count_miss(miss)
            raise miss
        if pending.found is not None and recorder.mode is Mode.VERIFY:
            from .live import send_live

            recorder.compare(pending.found, send_live(vcr_request))
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
        """A live answer arrived: record it (unless its host is one never recorded)."""
        pending = self._pending(vcr_request)
        if pending.ignored:
            return
        latency = time.perf_counter() - pending.started
        with sent_credentials(vcr_request.headers, vcr_request.uri):  # an answer that echoes the request's key is stored without it
            pending.recorder.record(pending.request, pending.key, RecordedResponse.from_vcr(vcr_response), latency)  # type: ignore[union-attr]

    def filter_request(self, vcr_request: Any) -> Any:
        """Every request is ours to record, except those to ignored hosts (None tells vcrpy to let them through)."""
        return None if self._pending(vcr_request).ignored else vcr_request

    def find_requests_with_most_matches(self, vcr_request: Any) -> list[tuple[Any, list, list]]:
        """aiohttp's redirect replay asks this; the request itself is the only candidate."""
        return [(vcr_request, [], [])]


_ABSENT = object()
# How long an HTTP library's import waits for another thread changing the patches (a build takes milliseconds).
_IMPORT_WAIT = 2.0
_PLACEHOLDER_MISS = (
    "not sent: this test records (mode '{mode}') but the request to {url} carries llm_replay's placeholder "
    "API key. The session replays (CI is set, or --llm-mode=replay), so llm_replay gave the SDK key variables "
    "a placeholder before the client was built, and a live call would only record a 401. Run the session with "
    "the real key and --llm-mode=record (e.g. OPENAI_API_KEY=sk-... pytest --llm-mode=record), or let this "
    "test replay."
)


def _keyable(body: Any) -> Any:
    """A body vcrpy hands over as an object, not bytes or text. aiohttp's ``json=`` (or ``data=`` form fields) is the
    Python value: the request is keyed and stored by its JSON text, the same whether recorded or replayed; a file among
    form fields is its bytes (vcrpy reads it), keyed by size and SHA-256 as a multipart upload's file is. Anything else
    (aiohttp's FormData) has no bytes to key a recording by, and is refused by name before anything is sent."""
    if isinstance(body, (bytearray, memoryview)):
        return body
    if isinstance(body, (dict, list, tuple)):
        return json.dumps(body, default=_bytes_digest)
    raise CassetteError(
        f"a request body of type {type(body).__name__} (such as aiohttp's FormData) cannot be recorded: llm_replay keys "
        "each recording by the bytes a request sends, and this body has none until the client writes it. Send bytes or "
        "text (data=...), JSON (json=...) or form fields as a dict, or upload through httpx or requests. Nothing was sent."
    )


def _bytes_digest(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"size": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    return str(value)


def _carries_placeholder_key(headers: Any) -> bool:
    return any(PLACEHOLDER_KEY in str(value) for value in headers.values())


class _ReusablePatchers:
    """vcrpy's patches, built once per process over one adapter, on while any activation is.

    Building them costs about 0.5 ms (vcrpy retries the import of every absent HTTP library, makes
    new connection classes and mock objects) and entering them through ``mock.patch`` another 60 µs,
    which each test paid. Built once and applied as plain ``setattr`` they cost a few µs; putting them on
    and off still cost ~70 µs a test, so a pytest session leaves them on from one llm_cache test to the next
    (``keep_on``) and takes them off before a test without llm_cache, so those are untouched. Between two
    tests nothing is active and a request passes unrecorded. Activations in several threads or tasks share
    them: each request asks the adapter for its own context's recorder.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[tuple[Recorder, int]] = []  # (recorder, thread that activated it), oldest first
        self._adapter: VcrCassetteAdapter | None = None
        # Each step is (target, attribute, replacement) to set, or a context manager to enter (vcrpy's ConnectionRemover).
        self._steps: list[Any] = []
        self._undo: list[Any] = []  # what puts things back; empty while the patches are off
        self._keep_on = False
        self._stale = False  # an HTTP library was imported while the patches were being changed: rebuild them
        self._paused = False  # the patches are off while a library is imported, and go back on after

    def enter(self, recorder: Recorder) -> VcrCassetteAdapter:
        """Count one more activation; the first puts the patches on (unless they were left on)."""
        with self._lock:
            if self._adapter is None:
                adapter = VcrCassetteAdapter()
                self._steps = _steps(adapter)
                self._adapter = adapter
            elif self._stale:
                self._rebuild(on=False)
            if not self._undo:
                self._apply()
            self._active.append((recorder, threading.get_ident()))
            return self._adapter

    def pause_for_import(self) -> None:
        """An HTTP library vcrpy has not kept is being imported (late_imports.py): the patches come off until it is."""
        if self._locked():
            try:
                self._paused = self._paused or bool(self._undo)
                self._remove()
            finally:
                self._lock.release()

    def library_imported(self) -> None:
        """The import ended: the patches are rebuilt to take the library in, and put back on if they were on, before the
        code that imported it runs on."""
        if self._locked():
            try:
                if self._adapter is not None:
                    self._rebuild(on=self._paused or bool(self._undo))
                self._paused = False
            finally:
                self._lock.release()

    def _locked(self) -> bool:
        """The lock, once the thread changing the patches lets go (the first llm_cache test building them): an import
        that went ahead would subclass vcrpy's stubs the patches put on meanwhile, and its library's calls would go
        unpatched. A thread holding it past ``_IMPORT_WAIT`` may be waiting for this very import (vcr.patch importing the
        same library): then the import goes ahead and the patches are rebuilt at the next activation (``_stale``)."""
        if self._lock.acquire(timeout=_IMPORT_WAIT):
            return True
        self._stale = True
        return False

    def _rebuild(self, on: bool) -> None:
        """The patches built again over the same adapter, after vcrpy has kept the originals of what is imported now."""
        self._remove()
        self._stale = False
        keep_originals_again()
        self._steps = _steps(self._adapter)  # type: ignore[arg-type]
        if on:
            self._apply()

    def leave(self, recorder: Recorder) -> None:
        """Count one activation less; the last takes the patches off, unless they are kept on between activations."""
        with self._lock:
            active = self._active
            position = len(active) - 1
            while active[position][0] is not recorder:  # the last activation of this recorder (nesting ends innermost first)
                position -= 1
            del active[position]
            if not self._active and not self._keep_on:
                self._remove()

    def keep_on(self, keep: bool) -> None:
        """Whether the patches stay on after the last activation ends; False takes them off now if nothing is active."""
        with self._lock:
            self._keep_on = keep
            if not keep and not self._active and self._undo:
                self._remove()

    def is_active(self, recorder: Recorder) -> bool:
        """Whether ``recorder`` is activated now (a context may still name one whose test has ended)."""
        return any(active is recorder for active, _ in self._active)

    def fallback(self) -> Recorder | None:
        """For a request from a context that activated nothing (a thread the test started): the one active
        recorder, or the innermost when all were activated by one thread (nesting), or None when none is;
        several threads' is ambiguous."""
        __tracebackhide__ = True
        active = self._active
        if not active:
            return None
        if all(thread == active[0][1] for _, thread in active):
            return active[-1][0]
        named = ", ".join(recorder.cassette.describe() for recorder, _ in active) or "none"
        raise CassetteMiss(
            f"{len(active)} cassettes are active in different threads ({named}) and this request's thread or task "
            "activated none of them, so llm_replay cannot tell whose recording it is. Activate the cassette in the "
            "thread that makes the call (use_cassette(...) there), or start the thread with contextvars.copy_context().run"
        )

    def _apply(self) -> None:
        """vcrpy's patches in its order; a failure part way takes off what was put on."""
        try:
            for step in self._steps:
                if isinstance(step, tuple):
                    target, attribute, replacement = step
                    self._undo.append((target, attribute, vars(target).get(attribute, _ABSENT)))
                    setattr(target, attribute, replacement)
                else:
                    step.__enter__()
                    self._undo.append(step)
        except BaseException:
            self._remove()
            raise

    def _remove(self) -> None:
        """Undo in reverse (as vcrpy's ExitStack does); every patch comes off, the first error is raised after."""
        undo, self._undo = self._undo, []
        failure: BaseException | None = None
        for step in reversed(undo):
            if not isinstance(step, tuple):
                try:
                    step.__exit__(None, None, None)
                except BaseException as error:
                    failure = failure or error
                continue
            target, attribute, original = step
            if original is _ABSENT:
                delattr(target, attribute)  # it was inherited: the class's own copy goes
            else:
                setattr(target, attribute, original)
        if failure is not None:
            raise failure


def _steps(adapter: VcrCassetteAdapter) -> list[Any]:
    """What vcrpy's CassettePatcherBuilder would enter, for the HTTP libraries imported so far (late_imports.py)."""
    defer_vcr_package_init()
    watch_late_imports(_REUSABLE.pause_for_import, _REUSABLE.library_imported)
    return withholding(lambda: _built_steps(adapter))


def _built_steps(adapter: VcrCassetteAdapter) -> list[Any]:
    """vcrpy's patchers: plain ``mock.patch.object`` as (target, attribute, replacement) triples, anything else kept as
    the context manager it is."""
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
    try:
        from vcr.stubs import httpx_stubs
    except ImportError:  # neither httpx nor httpx2 installed
        return steps
    return [*steps, (httpx_stubs, "_make_vcr_request", _vcr_request_of_httpx)]


def _vcr_request_of_httpx(real_request: Any, real_request_body: bytes) -> HttpxRequest:
    """What vcrpy's httpx stubs build from an httpx/httpx2 request and hand to the cassette (ours): vcrpy's own
    parses the URL and files every header in a case-insensitive dict, ~20 µs of each replayed call."""
    return HttpxRequest(real_request.method, str(real_request.url), real_request_body, real_request.headers)


def _content_type(headers: Any) -> str:
    """An httpx/httpx2 request's content type, found among the lower-case names httpx keeps for each header: filing
    every header by name cost a replayed call ~57 K instructions, this ~7 K. Any other layout of the headers
    object falls back to filing them all."""
    try:
        values = [value for _, name, value in headers._list if name == b"content-type"]
    except (AttributeError, TypeError, ValueError):
        return _lower_case_headers(headers).get("content-type") or ""
    try:
        return ", ".join(value.decode("ascii") for value in values)
    except UnicodeDecodeError:
        return ", ".join(value.decode(headers.encoding) for value in values)


def _lower_case_headers(headers: Any) -> dict[str, str]:
    """The headers under lower-case names, decoded as httpx decodes them, a repeated one joined with ", " as httpx
    joins it. All names, then all values, are decoded in one C-level pass each: as ASCII when they all are (what
    httpx's ``encoding`` would find, header by header in Python), else in the headers' own encoding."""
    raw = headers.raw
    names, values = b"\n".join(map(_NAME, raw)), b"\n".join(map(_VALUE, raw))
    try:
        decoded_names, decoded_values = names.decode("ascii"), values.decode("ascii")
    except UnicodeDecodeError:
        decoded_names, decoded_values = names.decode(headers.encoding), values.decode(headers.encoding)
    lower_names, split_values = decoded_names.lower().split("\n"), decoded_values.split("\n")
    found = dict(zip(lower_names, split_values))
    if len(found) == len(lower_names) == len(split_values) == len(raw):
        return found
    found = {}  # a repeated header, or a line break inside one (httpx sends neither, but may be handed them)
    encoding = headers.encoding
    for name, value in raw:
        name, value = name.decode(encoding).lower(), value.decode(encoding)
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


_NAME, _VALUE = itemgetter(0), itemgetter(1)


class HttpxRequest:
    """vcrpy's request for an httpx/httpx2 one, as much of it as this adapter and vcrpy's httpx stubs read: the
    method, URL and body, the content type, and, filed by name when first asked for (a miss, a live call), the
    headers; the host and port (parsed only for ignored hosts)."""

    __slots__ = ("method", "uri", "body", "_real_headers", "_headers", _STATE)

    def __init__(self, method: str, uri: str, body: bytes, headers: Any) -> None:
        self.method = method
        self.uri = uri
        self.body = body
        self._real_headers = headers  # httpx's Headers
        self._headers: _LowerCaseHeaders | None = None

    @property
    def content_type(self) -> str:
        return _content_type(self._real_headers)

    @property
    def headers(self) -> _LowerCaseHeaders:
        if self._headers is None:  # filled as a plain dict: the lower-casing lookups are for readers
            self._headers = _LowerCaseHeaders(_lower_case_headers(self._real_headers))
        return self._headers

    @property
    def _body(self) -> bytes:
        return self.body

    @property
    def host(self) -> str | None:
        return urlsplit(self.uri).hostname

    @property
    def port(self) -> int | None:
        parts = urlsplit(self.uri)
        return parts.port or {"https": 443, "http": 80}.get(parts.scheme)

    def __repr__(self) -> str:
        return f"<Request ({self.method}) {self.uri}>"


class _LowerCaseHeaders(dict):
    """Headers under lower-case names, found by a name in any case (``Content-Type`` finds ``content-type``)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name.lower() if isinstance(name, str) else name)


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
# The recorder of the running thread or asyncio task (tasks inherit their creator's).
_CURRENT: ContextVar[Recorder | None] = ContextVar("llm_replay_recorder", default=None)


def keep_patches_between_activations(keep: bool) -> None:
    """Leave vcrpy's patches on from one activation to the next (``True``: the pytest plugin, while tests that use
    llm_cache follow each other), or take them off now (``False``: before a test without it, at the session's end)."""
    _REUSABLE.keep_on(keep)


class intercepting:  # lower case like contextlib.suppress: used as ``with intercepting(recorder) as adapter:``
    """Route every HTTP library vcrpy patches through ``recorder`` for requests made in this context (a class, not a
    generator: every test enters one)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.token: Token | None = None

    def __enter__(self) -> VcrCassetteAdapter:
        adapter = _REUSABLE.enter(self.recorder)
        self.token = _CURRENT.set(self.recorder)
        return adapter

    def __exit__(self, *exc_info: object) -> None:
        token = self.token
        try:
            _CURRENT.reset(token)  # type: ignore[arg-type]
        except ValueError:  # left from another context (an async generator's teardown): restore by value
            _CURRENT.set(None if token.old_value is Token.MISSING else token.old_value)  # type: ignore[union-attr]
        _REUSABLE.leave(self.recorder)
