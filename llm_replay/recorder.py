"""Hit, miss or record: the decision each mode makes for one request, and the counts of what happened."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Callable

from .cassettes import InMemoryCache, SQLiteCache
from .errors import CassetteMiss
from .explain import explain_miss
from .fingerprint import CanonicalRequest
from .interaction import Interaction, RecordedResponse
from .settings import Mode

Cassette = InMemoryCache | SQLiteCache
# Rate limits and server errors say nothing about the request: retry them live, never replay them.
_NEVER_RECORDED = frozenset({429})


class Recorder:
    """One activation of a cassette (a test, or a ``use_cassette`` block) and what it did.

    The pytest fixture yields it, so a test can assert on ``replayed``, ``recorded``, ``missed``
    and ``interactions``.
    """

    def __init__(
        self,
        cassette: Cassette,
        mode: Mode,
        *,
        repeats: str = "cache",
        test_id: str | None = None,
        refreshed: set[tuple[str, int]] | None = None,
        record_hint: Callable[[], str] | None = None,
    ) -> None:
        self.cassette = cassette
        self.mode = mode
        self.repeats = repeats
        self.test_id = test_id
        self.replayed = 0
        self.recorded = 0
        self.missed = 0
        self.interactions: list[Interaction] = []
        self.misses: list[CassetteMiss] = []
        self._refreshed = refreshed if refreshed is not None else set()
        self._record_hint = record_hint
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<llm_cache mode={self.mode} replayed={self.replayed} recorded={self.recorded} missed={self.missed} cassette={self.cassette.describe()}>"

    def occurrence(self, request: CanonicalRequest) -> int:
        """Which repeat of this request this is: always 0 with cache semantics, else 0, 1, 2, … per test."""
        if self.repeats == "cache":
            return 0
        with self._lock:
            occurrence = self._seen.get(request.fingerprint, 0)
            self._seen[request.fingerprint] = occurrence + 1
        return occurrence

    def lookup(self, request: CanonicalRequest, occurrence: int) -> Interaction | None:
        """The recording to replay, or None to go live; in replay mode a miss raises CassetteMiss."""
        __tracebackhide__ = True  # the failure is about the caller's request, not about this frame
        key = (request.fingerprint, occurrence)
        if self.mode is Mode.REFRESH and key not in self._refreshed:
            return None
        found = self.cassette.get(*key)
        if found is not None:
            with self._lock:
                self.replayed += 1
                self.interactions.append(found)
            return found
        if self.mode is Mode.REPLAY:
            miss = CassetteMiss(explain_miss(request, occurrence, self.cassette, self._record_hint() if self._record_hint else None))
            self.count_miss(miss)
            raise miss
        return None

    def count_miss(self, miss: CassetteMiss) -> None:
        """Remember a miss (a request without recording, or a blocked connection), so it fails the test."""
        with self._lock:
            self.missed += 1
            self.misses.append(miss)

    def record(self, request: CanonicalRequest, occurrence: int, response: RecordedResponse, latency_s: float) -> None:
        """Keep a live answer, unless it is a rate limit or server error (those are retried live)."""
        if response.status in _NEVER_RECORDED or response.status >= 500:
            return
        interaction = Interaction.of(
            request,
            response,
            occurrence=occurrence,
            recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            latency_ms=round(latency_s * 1000, 1),
            tests=(self.test_id,) if self.test_id else (),
        )
        self.cassette.put(interaction)
        with self._lock:
            self._refreshed.add(interaction.key)
            self.recorded += 1
            self.interactions.append(interaction)

