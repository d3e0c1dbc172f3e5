"""LangChain caches (``set_llm_cache``, ``ChatOpenAI(cache=...)``) backed by llm_replay's own cassettes.

Drop-in for LangChain's ``InMemoryCache`` and langchain-community's ``SQLiteCache``: the same SQLite file
holds HTTP recordings and LangChain entries, so listings and miss explanations cover both. A hit is one
dict lookup: generations are parsed from the cassette once, on their first hit, and kept.
Needs langchain-core (``pip install langchain-core``, or ``pip install -e '.[langchain]'`` in the checkout); nothing else in llm_replay imports this.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Sequence

from langchain_core._api import suppress_langchain_beta_warning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.load import dumpd, load
from langchain_core.outputs import Generation

from ..engine.langchain_keys import is_langchain_request, langchain_request, without_credential_headers
from ..engine.recorder import Recorder, is_kept
from ..engine.settings import Mode
from ..errors import CassetteError, CassetteMiss
from ..model.fingerprint import CanonicalRequest
from ..model.interaction import Interaction, Key, RecordedResponse, utc_stamp
from ..stores.base import Store
from ..stores.memory import InMemoryCache as _MemoryStore
from ..stores.sqlite import SQLiteCache as _SQLiteStore

__all__ = ["InMemoryCache", "SQLiteCache", "RecorderCache", "LangChainNotVerified", "installed_as_llm_cache"]

_JSON_HEADERS = {"content-type": ["application/json"]}


class _ModelCall:
    """The model call a lookup let through (a miss, or a recorded error answer), as the HTTP layer beneath sees it:
    the LangChain key that stands for it, the error answer its requests get (replayed, or kept from the provider), and
    the request it sent last, so that a request that is not its own is never taken for it.

    ``batch``: the lookups one model call answers together, this one last. An LLM's ``generate([a, b])`` looks up every
    prompt, then sends those that missed in one request (or one per ``batch_size`` prompts, one after another), and an
    error answer to any fails them all."""

    __slots__ = ("cache", "asked", "request", "key", "answer", "sent", "succeeded", "answered", "batch")

    def __init__(self, cache: RecorderCache, asked: tuple[str, str], request: CanonicalRequest, key: Key, answer: Interaction | None = None) -> None:
        self.cache = cache
        self.asked = asked  # the cache's (prompt, llm_string)
        self.request = request
        self.key = key
        self.answer = answer
        self.sent: str | None = None  # the fingerprint of the last HTTP request it sent
        self.succeeded = False  # whether that request got a success answer
        self.answered = 0  # how many of its requests did: a batch sends at most one per lookup
        self.batch: list[_ModelCall] = [self]

    def joined(self, earlier: _ModelCall | None) -> _ModelCall:
        """This call, in the batch of the ``earlier`` call let through in this context if that one is still being
        gathered: the same cache and model settings, and no request sent since."""
        if earlier is not None and earlier.gathering(self.cache, self.asked[1]):
            self.batch = [*earlier.batch, self]
        return self

    def replayed_answer(self) -> Interaction | None:
        """The error answer its request gets without asking the provider, when every lookup of the batch has one: the
        latest recorded (a batch's request answered them all at once); with a lookup that missed, the request is another,
        and goes to the provider as the mode allows."""
        answers = [member.answer for member in self.batch]
        if any(answer is None for answer in answers):
            return None
        return max(answers, key=lambda answer: answer.recorded_at)  # type: ignore[union-attr]

    def gathering(self, cache: RecorderCache, llm_string: str) -> bool:
        """Whether a lookup of ``llm_string`` may be answered by this call's model request, not yet sent."""
        return cache is self.cache and self.sent is None and self.asked[1] == llm_string

    def owns(self, cache: RecorderCache, fingerprint: str) -> bool:
        """Whether an HTTP request is this call's: its first, the SDK's retry of one that got an error or no answer, or a
        batch's next request after a success, while it has lookups left. Once the model raised and the app went on (a
        ``stream()``, another SDK call), LangChain never tells the cache, so a request of another shape, or one after a
        success beyond those, is not; nor is one after the test whose cache this is."""
        if cache is not self.cache:
            return False
        if self.succeeded:
            return self.answered < len(self.batch)
        return self.sent is None or fingerprint == self.sent

    def claims(self, cache: RecorderCache, fingerprint: str) -> bool:
        """Whether the request is this call's (``owns``), which then waits for its answer."""
        if not self.owns(cache, fingerprint):
            return False
        self.sent, self.succeeded = fingerprint, False
        return True


# Set between a lookup that lets the model be called and that call's update: the call LangChain's cache is waiting for.
_MODEL_CALL: ContextVar[_ModelCall | None] = ContextVar("llm_replay_langchain_model_call", default=None)


class _CassetteBackedCache(BaseCache):
    """What both drop-in caches share: keys as canonical requests, generations stored as LangChain JSON."""

    def __init__(self, cassette: Store) -> None:
        self.cassette = cassette
        self._requests: dict[tuple[str, str], CanonicalRequest] = {}
        self._parsed: dict[Key, tuple[Interaction, list[Any]]] = {}

    def _request(self, prompt: str, llm_string: str) -> CanonicalRequest:
        key = (prompt, llm_string)
        request = self._requests.get(key)
        if request is None:
            request = self._requests[key] = langchain_request(prompt, llm_string)
        return request

    def _generations(self, interaction: Interaction) -> list[Any]:
        """The generations an entry holds, parsed on first use; a re-recorded entry is parsed anew."""
        parsed = self._parsed.get(interaction.key)
        if parsed is not None and parsed[0] is interaction:
            return parsed[1]
        generations = _loaded(interaction, self.cassette)
        self._parsed[interaction.key] = (interaction, generations)
        return generations

    def clear(self, **kwargs: Any) -> None:
        """Remove every LangChain entry from the cassette; its HTTP recordings stay."""
        keys = [interaction.key for interaction in self.cassette.interactions() if is_langchain_request(interaction.request)]
        self.cassette.delete(keys)
        self._forget()

    def _forget(self) -> None:
        self._parsed.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Same as ``lookup``: a hit is a dict lookup, a first hit one indexed SQLite read."""
        return self.lookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Same as ``update``: one short SQLite transaction."""
        self.update(prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        """Same as ``clear``."""
        self.clear(**kwargs)


class _StandaloneCache(_CassetteBackedCache):
    """A plain cache over a cassette, for apps and scripts: every miss is a miss, every update is kept."""

    def __init__(self, cassette: Store) -> None:
        super().__init__(cassette)
        self._hits: dict[tuple[str, str], list[Any]] = {}

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations stored for this prompt and model settings, or None."""
        hit = self._hits.get((prompt, llm_string))
        if hit is not None:
            return hit
        found = self.cassette.get(self._stored_request(prompt, llm_string).fingerprint)
        if found is None or found.response.status >= 400:  # an error answer the pytest layer kept: only the model gives it
            return None
        hit = self._hits[prompt, llm_string] = self._generations(found)
        return hit

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store the generations; the next hit returns them as parsed back from the cassette. Over an error answer a
        pytest run recorded in the same file they are kept in memory only: that test replays its error."""
        request = self._stored_request(prompt, llm_string)
        found = self.cassette.get(request.fingerprint)
        if found is not None and found.response.status >= 400:
            self._hits[prompt, llm_string] = list(return_val)
            return
        self.cassette.put(Interaction.of(request, serialized(return_val), recorded_at=utc_stamp()))
        self._hits.pop((prompt, llm_string), None)

    def _stored_request(self, prompt: str, llm_string: str) -> CanonicalRequest:
        """The key's request as the cassette stores it, secret values scrubbed (as ``Recorder.keyed`` does)."""
        return self.cassette.scrubber.request(self._request(prompt, llm_string))

    def _forget(self) -> None:
        super()._forget()
        self._hits.clear()


class InMemoryCache(_StandaloneCache):
    """LangChain's ``InMemoryCache``, in llm_replay's in-memory cassette (nothing written to disk)."""

    __module__ = "llm_replay.langchain"  # its public home

    def __init__(self) -> None:
        super().__init__(_MemoryStore())


class SQLiteCache(_StandaloneCache):
    """langchain-community's ``SQLiteCache`` without SQLAlchemy: an llm_replay cassette file.

    The file can be shared with pytest runs (``--llm-cassette``) and read with the ``sqlite3`` shell.
    """

    __module__ = "llm_replay.langchain"  # its public home

    def __init__(self, database_path: str | os.PathLike[str] = ".langchain.db") -> None:
        try:
            cassette = _SQLiteStore(database_path)
        except CassetteError as error:
            raise CassetteError(
                f"{error}. A file written by langchain-community's SQLiteCache cannot be reused: "
                "give llm_replay.langchain.SQLiteCache another database_path (the old file is only a cache)"
            ) from error.__cause__
        super().__init__(cassette)
        self.database_path = cassette.path

    def close(self) -> None:
        """Fold the write-ahead log into the file (also done when the process exits)."""
        self.cassette.close()


class RecorderCache(_CassetteBackedCache):
    """The pytest fixture's cache: lookups and updates go through a Recorder, so modes, counts and
    strict misses behave exactly as at the HTTP layer."""

    __module__ = "llm_replay.langchain"  # its public home

    def __init__(self, recorder: Recorder, *, strict: bool = True) -> None:
        super().__init__(recorder.cassette)
        self.recorder = recorder
        self.strict = strict
        # each miss's key, oldest first per prompt and settings: concurrent repeats (batch, gather) took their own
        self._pending: dict[tuple[str, str], list[_ModelCall]] = {}

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """A recorded entry, None to call the model, or (strict ``replay``) CassetteMiss with a diff."""
        __tracebackhide__ = True
        request, key = self.recorder.keyed(self._request(prompt, llm_string))
        found = self.recorder.lookup(request, key, strict=self.strict)
        earlier = _MODEL_CALL.get()
        if found is None:
            call = _ModelCall(self, (prompt, llm_string), request, key).joined(earlier)
            self._pending.setdefault(call.asked, []).append(call)
            _MODEL_CALL.set(call)
            return None
        if found.response.status >= 400:  # an error answer (``keep_error``): the model is called, its request gets it
            _MODEL_CALL.set(_ModelCall(self, (prompt, llm_string), request, key, found).joined(earlier))
            return None
        if earlier is None or not earlier.gathering(self, llm_string):  # a hit amid a batch's lookups leaves the batch be
            _MODEL_CALL.set(None)
        try:
            return self._generations(found)
        except CassetteError as error:  # a miss, not the plain error: the app's ``except Exception`` must not hide it
            miss = CassetteMiss(str(error))
            self.recorder.count_miss(miss)
            raise miss from error

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Record what the model answered (never in a strict mode (replay, adopt, verify): the layer below answered then)."""
        _MODEL_CALL.set(None)
        if self.recorder.mode.fails_on_miss:
            return
        request, key = self._claimed(prompt, llm_string)
        self.recorder.record(request, key, serialized(return_val), latency_s=0.0)

    def _claimed(self, prompt: str, llm_string: str) -> tuple[CanonicalRequest, Key]:
        """The key the oldest unanswered miss of this prompt took (an update without a lookup takes a new one)."""
        try:
            call = self._pending[prompt, llm_string].pop(0)
        except (KeyError, IndexError):
            return self.recorder.keyed(self._request(prompt, llm_string))
        return call.request, call.key

    def keep_error(self, call: _ModelCall, response: RecordedResponse, latency_s: float) -> None:
        """Record an error answer about the request (a 400, a refused key) as the entry of each lookup the call answers
        (its batch), as the HTTP layer records it, so that a replay gives the app the same error; a rate limit or a server
        error leaves the call waiting (the SDK retries it, and only its answer is kept)."""
        if not is_kept(response.status):
            return
        for member in call.batch:
            try:
                self._pending[member.asked].remove(member)
            except (KeyError, ValueError):
                continue  # answered already (an update of the same prompt took its key), or replayed its own error
            self.recorder.record(member.request, member.key, response, latency_s)
            member.answer = Interaction.of(member.request, response, fingerprint=member.key[0], occurrence=member.key[1], recorded_at=utc_stamp())

    def ended(self) -> None:
        """The test is over: count the misses the model never answered (it raised, and the app went on) as live answers
        not kept, as the HTTP layer counts a 5xx: a refresh with any is no complete one and takes none of the test's
        recordings."""
        self.recorder.unrecorded += sum(map(len, self._pending.values()))
        self._pending.clear()


class LangChainNotVerified(UserWarning):
    """``--llm-mode=verify`` replayed LangChain cache hits without the live comparison it promises."""

    __module__ = "llm_replay.langchain"  # its public home


class _VerifyingCache(RecorderCache):
    """Verify mode's cache: a hit cannot be compared with a live answer (a cache cannot call the model), so it is
    counted, and the test warns rather than pass as if it had been checked."""

    def __init__(self, recorder: Recorder, *, strict: bool = True) -> None:
        super().__init__(recorder, strict=strict)
        self.unverified = 0

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """As in replay; a hit counts as replayed without comparison."""
        __tracebackhide__ = True
        found = super().lookup(prompt, llm_string)
        if found is not None:
            self.unverified += 1
        return found

    def ended(self) -> None:
        """Also warn of the hits this test replayed without comparison."""
        super().ended()
        if self.unverified:
            warnings.warn(
                LangChainNotVerified(
                    "llm_replay verify: LangChain cache hits were replayed without a live comparison (the LangChain layer "
                    "cannot call the model itself); to verify these calls, run them with layer='http'"
                ),
                stacklevel=1,
            )


@contextmanager
def installed_as_llm_cache(recorder: Recorder, *, strict: bool = True) -> Iterator[RecorderCache]:
    """LangChain's global cache is ``recorder``'s for the block; the previous one comes back even on failure.

    ``strict`` (the LangChain layer alone): what skips LangChain's cache (``stream``, ``astream``) is answered at
    the HTTP layer instead, so it records and replays too and never goes live while replaying.
    """
    previous = get_llm_cache()
    cache = (_VerifyingCache if recorder.mode is Mode.VERIFY else RecorderCache)(recorder, strict=strict)
    _MODEL_CALL.set(None)
    with ExitStack() as stack:
        if strict:
            from .http import intercepting

            stack.enter_context(intercepting(_PastTheCache(recorder, cache)))  # type: ignore[arg-type]
        set_llm_cache(cache)
        try:
            yield cache
        finally:
            set_llm_cache(previous)
            _MODEL_CALL.set(None)
            cache.ended()


class _PastTheCache:
    """The recorder as the HTTP layer sees it under the LangChain layer alone: it answers the calls that skip
    LangChain's cache, and lets through untouched the call a cache miss makes (the cache records that one), but for
    an error answer, which the cache's entry holds and replays."""

    def __init__(self, recorder: Recorder, cache: RecorderCache) -> None:
        self._recorder = recorder
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)

    def keyed(self, request: CanonicalRequest) -> tuple[CanonicalRequest, Key]:
        """The recorder's key; but the cache's own call is never stored at the HTTP layer, so with ``repeats="sequence"``
        its request takes no place (the same request sent past the cache, ``cache=False`` or the SDK, would record at the
        second and, with the cache answering, look at the first when replayed)."""
        call = _MODEL_CALL.get()
        if call is None or self._recorder.repeats == "cache":
            return self._recorder.keyed(request)
        scrubbed = self._recorder.cassette.scrubber.request(request)  # as Recorder.keyed, without taking a place
        fingerprint = self._recorder.rules.fingerprint(scrubbed)
        if call.owns(self._cache, fingerprint):
            return scrubbed, (fingerprint, 0)
        return self._recorder.keyed(request)

    def lookup(self, request: CanonicalRequest, key: Key, *, strict: bool = True) -> Interaction | None:
        """For the cache's own call, its recorded error answer or None (it goes live, as the mode allowed); else the
        recorder's answer."""
        __tracebackhide__ = True
        call = _MODEL_CALL.get()
        if call is not None:
            if call.claims(self._cache, key[0]):
                return call.replayed_answer()
            _MODEL_CALL.set(None)  # that call is over: this request and the next are answered as any other
        return self._recorder.lookup(request, key, strict=strict)

    def record(self, request: CanonicalRequest, key: Key, response: RecordedResponse, latency_s: float) -> None:
        """Keep the live answer of a call that skipped the cache; of the cache's own call, only an error answer (the
        cache keeps the generations)."""
        call = _MODEL_CALL.get()
        if call is None or call.sent != key[0]:
            self._recorder.record(request, key, response, latency_s)
            return
        call.succeeded = response.status < 400
        if call.succeeded:
            call.answered += 1
        else:
            self._cache.keep_error(call, response, latency_s)


def _loaded(interaction: Interaction, cassette: Store) -> list[Any]:
    """The generations a LangChain entry stores, or CassetteError naming the entry and how to replace it."""
    try:
        with suppress_langchain_beta_warning():
            # Cassettes are reviewed and committed like code; "core" admits LangChain's own classes only.
            generations = load(json.loads(interaction.response.body), allowed_objects="core", ignore_unserializable_fields=True)
    except Exception as error:  # whatever LangChain's loader makes of bytes that are not what it wrote
        problem = f"{type(error).__name__}: {error}"
    else:
        if isinstance(generations, list) and all(isinstance(generation, Generation) for generation in generations):
            return generations
        problem = "it holds no list of LangChain generations"
    entry = "#".join(map(str, interaction.key))
    remove = f"llm-replay rm --cassette {cassette.describe()} {entry}"
    if interaction.tests:
        where = f" (recorded by {', '.join(interaction.tests)})"
        fix = f"re-record it: pytest --llm-mode=refresh {interaction.tests[0]} (with the API key set), or delete it: {remove}"
    else:
        where, fix = "", f"delete it and record it again: {remove}"
    raise CassetteError(f"the LangChain entry {entry} in {cassette.describe()}{where} cannot be read ({problem}); {fix}")


def serialized(generations: Sequence[Any]) -> RecordedResponse:
    """Generations as the response of a LangChain entry: LangChain's own JSON, readable in the cassette, without the
    credential headers a model copied into it."""
    body = json.dumps([without_credential_headers(dumpd(generation)) for generation in generations], ensure_ascii=False)
    return RecordedResponse(status=200, reason="OK", headers=_JSON_HEADERS, body=body.encode("utf-8"))
