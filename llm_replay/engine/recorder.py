"""Hit, miss or record: the decision each mode makes for one request, and the counts of what happened."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Callable

from ..errors import CassetteError, CassetteMiss
from ..model.fingerprint import CanonicalRequest
from ..model.interaction import Interaction, Key, RecordedResponse, utc_stamp
from ..stores.base import Store
from .drift_tally import Drift
from .explain import explain_miss
from .matching import MatchRules, RekeyIndex
from .settings import Mode

# Rate limits and server errors say nothing about the request: retry them live, never replay them.
_NEVER_RECORDED = frozenset({429})


class Recorder:
    """One activation of a cassette (a test, or a ``use_cassette`` block) and what it did.

    The pytest fixture yields it, so a test can assert on ``replayed``, ``recorded``, ``missed``,
    ``interactions`` and ``frozen_at`` (the instant the wall clock reads, or None when it is not frozen).
    ``clock_unread`` marks a replay left on the real clock because the test's recording never read it.
    """

    def __init__(
        self,
        cassette: Store,
        mode: Mode,
        *,
        repeats: str = "cache",
        rules: MatchRules | None = None,
        rekey: RekeyIndex | None = None,
        test_id: str | None = None,
        frozen_at: datetime | None = None,
        keep_instant: bool = False,
        clock_unread: bool = False,
        refreshed: set[Key] | None = None,
        record_hint: Callable[[], str] | None = None,
        on_live: Callable[["Recorder", CanonicalRequest, int, float], None] | None = None,
    ) -> None:
        self.cassette = cassette
        self.mode = mode
        self.repeats = repeats
        self.rules = rules or MatchRules()
        self.test_id = test_id
        self.frozen_at = frozen_at
        self.clock_unread = clock_unread
        self.replayed = 0
        self.recorded = 0
        self.missed = 0
        self.interactions: list[Interaction] = []
        self.how: list[str] = []  # beside each interaction: "replayed", "adopted" (found re-keyed) or "recorded"
        self.drift: list[Drift] = []  # each recording this activation overwrote, old answer against new
        self.replays_by_key: Counter[Key] = Counter()  # what the run used, written once at its end
        self.misses: list[CassetteMiss] = []
        self._rekey = rekey
        self._keep_instant = keep_instant and frozen_at is not None and test_id is not None
        self._instant_kept = False
        self._refreshed = refreshed if refreshed is not None else set()
        self._record_hint = record_hint
        self._on_live = on_live
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<llm_cache mode={self.mode} replayed={self.replayed} recorded={self.recorded} missed={self.missed} cassette={self.cassette.describe()}>"

    def keyed(self, request: CanonicalRequest) -> tuple[CanonicalRequest, Key]:
        """The request as the cassette stores it (secret values scrubbed, so whoever's key it carries it
        matches its recording), and where: its fingerprint under the match rules, and which repeat of it
        this is (always 0 with cache semantics, else 0, 1, 2, … per test). Every layer asks here."""
        request = self.cassette.scrubber.request(request)
        fingerprint = self.rules.fingerprint(request)
        if self.repeats == "cache":
            return request, (fingerprint, 0)
        with self._lock:
            occurrence = self._seen.get(fingerprint, 0)
            self._seen[fingerprint] = occurrence + 1
        return request, (fingerprint, occurrence)

    def lookup(self, request: CanonicalRequest, key: Key, *, strict: bool = True) -> Interaction | None:
        """The recording to replay, or None to go live; in replay mode a miss raises CassetteMiss.

        ``strict=False`` lets a miss pass to a layer below that applies the mode itself (LangChain over HTTP).
        """
        __tracebackhide__ = True  # the failure is about the caller's request, not about this frame
        if self.mode is Mode.REFRESH and key not in self._refreshed:
            return None
        found = self.cassette.get(*key)
        how = "replayed"
        if found is None and self._rekey is not None:
            found, how = self._rekey.find(self.cassette, *key), "adopted"
        if found is not None:
            with self._lock:
                self.replayed += 1
                self.replays_by_key[key] += 1
                self.interactions.append(found)
                self.how.append(how)
            return found
        if self.mode is Mode.REPLAY and strict:
            hint = self._record_hint() if self._record_hint else None
            miss = CassetteMiss(explain_miss(request, key, self.cassette, self.rules, hint, clock_unread=self.clock_unread))
            self.count_miss(miss)
            raise miss
        return None

    def count_miss(self, miss: CassetteMiss) -> None:
        """Remember a miss (a request without recording, or a blocked connection), so it fails the test."""
        with self._lock:
            self.missed += 1
            self.misses.append(miss)

    def record(self, request: CanonicalRequest, key: Key, response: RecordedResponse, latency_s: float) -> None:
        """Keep a live answer, unless it is a rate limit or server error (those are retried live). A refresh
        compares the answer it overwrites with the new one (``drift``)."""
        if self._on_live is not None:
            self._on_live(self, request, response.status, latency_s)
        if response.status in _NEVER_RECORDED or response.status >= 500:
            return
        fingerprint, occurrence = key
        interaction = Interaction.of(
            request,
            response,
            fingerprint=fingerprint,
            occurrence=occurrence,
            recorded_at=utc_stamp(),
            latency_ms=round(latency_s * 1000, 1),
            tests=(self.test_id,) if self.test_id else (),
        )
        with self._lock:
            keep_instant, self._keep_instant = self._keep_instant, False
        replaced = self.cassette.get(*key) if self.mode is Mode.REFRESH else None
        try:
            if keep_instant:  # the instant goes in with the first recording it shaped, so both survive a kill
                self.cassette.put_instant(self.test_id, self.frozen_at)  # type: ignore[arg-type]
                self._instant_kept = True
            self.cassette.put(interaction)
        except CassetteError as error:
            # A CassetteMiss, not the plain error: the app's ``except Exception`` must not let the test pass unrecorded.
            failure = CassetteMiss(f"the live answer from {request.method} {request.url} could not be recorded: {error}")
            self.count_miss(failure)
            raise failure from error
        with self._lock:
            self._refreshed.add(interaction.key)
            self.recorded += 1
            self.interactions.append(interaction)
            self.how.append("recorded")
        if replaced is not None:
            drift = Drift.between(key, interaction.request_json, replaced.response, interaction.response)
            with self._lock:
                self.drift.append(drift)

    def keep_clock_read(self, read: bool) -> None:
        """At the end of a frozen test: store whether it read the clock, so its replays freeze only if it did.

        A new instant takes this run's answer; a reused one only ever turns to "read" (what earlier runs
        recorded under it may have read the clock). Replays write nothing.
        """
        if self.test_id is None or self.mode is Mode.REPLAY:
            return
        if self._instant_kept:
            self.cassette.put_clock_read(self.test_id, read)
        elif read and self.frozen_at is not None and not self._keep_instant:
            self.cassette.put_clock_read(self.test_id, True)
