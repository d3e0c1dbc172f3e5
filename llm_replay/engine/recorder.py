"""Hit, miss or record: the decision each mode makes for one request, and the counts of what happened."""

from __future__ import annotations

import heapq
import shlex
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable

from ..errors import CassetteError, CassetteMiss
from ..model.fingerprint import CanonicalRequest, respelled
from ..model.interaction import Interaction, Key, RecordedResponse, utc_stamp
from ..stores.base import Store
from .forked_children import IN_CHILD, tell_parent, tell_parent_used
from .adoption import AdoptionIndex, candidate_lines, chosen, shape_change
from .hooks import BeforeRecord, shaped
from .host_patterns import HostPatterns
from .matching import MatchRules, RekeyIndex
from .settings import Mode

if TYPE_CHECKING:  # what explains a miss and compares answers is imported when a miss or a comparison happens (~2 ms)
    from .drift import Drift

# Rate limits and server errors say nothing about the request: retry them live, never replay them.
_NEVER_RECORDED = frozenset({429})
# An answer refusing the key says nothing about the request either: a refresh never overwrites a success with it.
_KEY_REFUSED = frozenset({401, 403})


def is_kept(status: int) -> bool:
    """Whether a live answer with this status is recorded: a rate limit or a server error is not (it says nothing about
    the request, and the SDK retries it live). Every layer that records asks here."""
    return status not in _NEVER_RECORDED and status < 500


def _damaged(error: CassetteError) -> bool:
    """Whether a store refused to read one recording because of its stored value (not because the store is gone)."""
    from ..stores.sqlite import DamagedRecording

    if isinstance(error, DamagedRecording):
        return True
    redis_store = sys.modules.get("llm_replay.stores.redis")  # only loaded where a Redis cassette is in use
    return redis_store is not None and isinstance(error, redis_store.DamagedValue)


def _owners_of_damaged(cassette: Store, key: Key) -> tuple[str, ...]:
    """The owners of a recording the store cannot read, where its owners can still be read (a rare path: the whole
    index is read); none where they are damaged too."""
    try:
        return next((owners for found, owners, _ in cassette.index() if found == key), ())
    except CassetteError as error:
        if not _damaged(error):
            raise
        return ()


def _is_stamp(text: str) -> bool:
    """Whether a recording's time reads as one (read only for a recording that seems newer than the refresh)."""
    try:
        datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return False
    return True


class Refreshed:
    """What a refresh session re-recorded, so that it asks each distinct question once: the keys this process wrote,
    and the instant the session began (under pytest-xdist the controller's, shared by its workers), since which a
    recording was written by this session, in another worker perhaps."""

    __slots__ = ("keys", "since")

    def __init__(self, since: str | None = None) -> None:
        self.keys: set[Key] = set()
        self.since = since  # utc_stamp's form, which compares as text

    def includes(self, cassette: Store, key: Key) -> bool:
        if key in self.keys:
            return True
        if self.since is None:
            return False
        try:
            found = cassette.get(*key)
        except CassetteError as error:
            if not _damaged(error):
                raise
            return False  # a row no session of llm_replay wrote: this refresh re-records it
        if found is None or found.recorded_at < self.since or not _is_stamp(found.recorded_at):
            return False  # older, or a time that is no stamp (a hand edit): no session wrote it, so re-record it
        self.keys.add(key)
        return True


class Recorder:
    """One activation of a cassette (a test, or a ``use_cassette`` block) and what it did.

    The pytest fixture yields it, so a test can assert on ``replayed``, ``recorded``, ``missed``,
    ``interactions`` and ``frozen_at`` (the instant the wall clock reads, or None when it is not frozen).
    ``clock_unread`` marks a replay left on the real clock because the test's recording never read it.
    ``drift`` holds each answer compared with its recording (refresh's overwritten ones, verify's live ones),
    ``expired`` the recordings replayed although older than ``max_age`` (``on_expired="warn"``), and
    ``adoptions`` what adopt mode re-keyed (old → new request).
    """

    def __init__(
        self,
        cassette: Store,
        mode: Mode,
        *,
        repeats: str = "cache",
        rules: MatchRules | None = None,
        rekey: RekeyIndex | None = None,
        adoption: AdoptionIndex | None = None,
        test_id: str | None = None,
        frozen_at: datetime | None = None,
        keep_instant: bool = False,
        clock_unread: bool = False,
        refreshed: Refreshed | None = None,
        record_hint: Callable[[], str] | None = None,
        on_live: Callable[["Recorder", CanonicalRequest, int, float], None] | None = None,
        max_age: float | None = None,
        on_expired: str = "warn",
        before_record: BeforeRecord | None = None,
        ignore_hosts: Iterable[str] | HostPatterns = (),
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
        # live answers not kept (a rate limit, a server error, a before_record hook's None): a refresh with any is no
        # complete one, and replaces none of the test's earlier recordings
        self.unrecorded = 0
        self.interactions: list[Interaction] = []
        self.how: list[str] = []  # beside each interaction: "replayed", "adopted" (found re-keyed) or "recorded"
        self.drift: list[Drift] = []  # each answer compared: a recording refresh overwrote, or verify's live answer
        self.used: dict[Key, int] = {}  # recordings it recorded (0) or replayed (how often): what it owns
        self.misses: list[CassetteMiss] = []
        self.adoptions: list[str] = []  # adopt mode: each re-keyed recording's shape change (old → new)
        self._rekey = rekey
        self._adoption = adoption
        self._keep_instant = keep_instant and frozen_at is not None and test_id is not None
        self._instant_kept = False
        self._refreshed = refreshed if refreshed is not None else Refreshed()
        self._record_hint = record_hint
        self._on_live = on_live
        self._seen: dict[str, int] = {}  # repeats="sequence": requests asked so far, by their plain spelling's key
        self._plain: dict[str, str] = {}  # the key of each request spelled otherwise -> its plain spelling's
        # repeats="sequence": occurrences whose live answer was not kept (a 5xx or 429 the SDK retries), taken again
        # first, so the retry records in the place the replay will look for it
        self._freed: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.max_age = max_age
        self.on_expired = on_expired
        self.before_record = before_record
        ignored = ignore_hosts if isinstance(ignore_hosts, HostPatterns) else HostPatterns(ignore_hosts)
        self.ignored_hosts = ignored if ignored else None  # None: the per-request check is one attribute test
        self.expired: list[str] = []

    def __repr__(self) -> str:
        return f"<llm_cache mode={self.mode} replayed={self.replayed} recorded={self.recorded} missed={self.missed} cassette={self.cassette.describe()}>"

    def keyed(self, request: CanonicalRequest) -> tuple[CanonicalRequest, Key]:
        """The request as the cassette stores it (secret values scrubbed, so whoever's key it carries it
        matches its recording), and where: its fingerprint under the match rules, and which repeat of it
        this is (always 0 with cache semantics, else 0, 1, 2, … per test). Every layer asks here."""
        request = self.cassette.scrubber.request(request)
        if self.repeats == "cache":
            return request, (self.rules.fingerprint(request), 0)
        view = self.rules.view(request)
        # The place is counted by the plain spelling, so 0 and 0.0 are one request asked twice, as the second look-up on
        # a miss finds them; the key stays the request's own. respelled() returns the request itself when plain.
        fingerprint, counted = view.fingerprint, respelled(view).fingerprint
        with self._lock:
            if counted != fingerprint:
                self._plain[fingerprint] = counted
            freed = self._freed.get(counted)
            if freed:
                return request, (fingerprint, heapq.heappop(freed))  # the earliest first
            occurrence = self._seen.get(counted, 0)
            self._seen[counted] = occurrence + 1
        return request, (fingerprint, occurrence)

    def lookup(self, request: CanonicalRequest, key: Key, *, strict: bool = True) -> Interaction | None:
        """The recording to replay, or None to go live; in replay mode a miss raises CassetteMiss.

        ``strict=False`` lets a miss pass to a layer below that applies the mode itself (LangChain over HTTP).
        """
        __tracebackhide__ = True  # the failure is about the caller's request, not about this frame
        if self.mode is Mode.REFRESH and not self._refreshed.includes(self.cassette, key):
            return None
        how = "replayed"
        try:
            found = self.cassette.get(*key)
            if found is None and self._rekey is not None:
                found = self._rekey.find(self.cassette, *key, request)
            if found is None and self.mode is Mode.ADOPT and self._adoption is not None:
                found, how = self._adopted(request, key), "adopted"
            if found is None and self.mode.fails_on_miss and strict:
                from .explain import explain_miss

                hint = self._record_hint() if self._record_hint else None
                miss = CassetteMiss(
                    explain_miss(
                        request, key, self.cassette, self.rules, hint,
                        clock_unread=self.clock_unread, mode=self.mode, adopt=self._adoption, in_test=self.test_id is not None,
                    )
                )
                self.count_miss(miss)
                raise miss
        except CassetteError as error:
            # A cassette that cannot be read (a Redis gone mid-session) fails the test; it never becomes a live call.
            failure = CassetteMiss(f"{request.method} {request.url} could not be looked up: {error}")
            self.count_miss(failure)
            raise failure from error
        if found is not None and self.max_age is not None and not self._fresh_enough(request, found):
            return None  # expired, and this mode may re-record it
        if found is not None:
            with self._lock:
                self.replayed += 1
                self.used[found.key] = self.used.get(found.key, 0) + 1  # its own key: a recording found under older match rules keeps it
                self.interactions.append(found)
                self.how.append(how)
            if IN_CHILD:
                tell_parent_used(*found.key, replayed=True)
        return found

    def _adopted(self, request: CanonicalRequest, key: Key) -> Interaction | None:
        """The recording an SDK upgrade moved, copied to ``request``'s key (written once); None when there is none.

        Several candidates with different answers: this test's own wins, else the miss fails and lists them. The old key
        always stays: a test this process cannot see may still send the old request (in another xdist worker or pytest
        process, or left out of the run and using it through the bookkeeping only). ``--llm-prune`` takes it once every
        test that used it passes without it, as any recording.
        """
        __tracebackhide__ = True
        candidates = self._adoption.candidates(self.cassette, request, key)  # type: ignore[union-attr]
        if not candidates:
            return self.cassette.get(*key)  # another xdist worker may have adopted it a moment ago
        old = chosen(candidates, self.test_id)
        if old is None:
            miss = CassetteMiss(
                f"{len(candidates)} recordings could be adopted for {request.method} {request.url} and none is this test's own "
                f"({self.test_id or 'no test'}); none was adopted:\n" + "\n".join(candidate_lines(candidates, request))
                + "\n  re-record this test (pytest --llm-mode=refresh ...), or delete the stale recordings with llm-replay rm"
            )
            self.count_miss(miss)
            raise miss
        tests = tuple(sorted({*old.tests, self.test_id})) if self.test_id else old.tests  # the owners it had, and this test
        adopted = Interaction.of(
            request, old.response, fingerprint=key[0], occurrence=key[1], recorded_at=old.recorded_at, latency_ms=old.latency_ms, tests=tests
        )
        try:
            self.cassette.put(adopted)
        except CassetteError as error:
            failure = CassetteMiss(f"the recording of {old.request.method} {old.request.url} could not be re-keyed to {request.url}: {error}")
            self.count_miss(failure)
            raise failure from error
        with self._lock:
            self.adoptions.append(shape_change(old.request, request))
        return adopted

    def _fresh_enough(self, request: CanonicalRequest, found: Interaction) -> bool:
        """Whether an expired recording may still be replayed: yes with a warning, no to re-record it (False),
        or a failure naming its age and the command that re-records it."""
        __tracebackhide__ = True
        from .age import age_of, age_text

        age = age_of(found)
        if age is None or age <= self.max_age:  # type: ignore[operator]
            return True
        where = f"{request.method} {request.url}"
        old = f"{age_text(age)} old (recorded {found.recorded_at}), older than max_age {age_text(self.max_age)}"  # type: ignore[arg-type]
        if self.on_expired == "warn":
            with self._lock:
                self.expired.append(f"{where}: {old}")
            return True
        if self.on_expired == "refresh" and not self.mode.fails_on_miss:
            return False
        why = f"on_expired = {self.on_expired}" + (f", and mode '{self.mode}' does not call the network to re-record it" if self.on_expired == "refresh" else "")
        command = (
            f"pytest --llm-mode=refresh {shlex.quote(self.test_id)}  (with the API key set)" if self.test_id else "run the same code with mode='refresh' and an API key"
        )
        miss = CassetteMiss(f"the recording of {where} is {old} ({why}).\nto re-record it: {command}")
        self.count_miss(miss)
        raise miss

    def compare(self, found: Interaction, live: RecordedResponse | None) -> tuple[str, ...]:
        """Verify: how the live answer differs from the recording (drift classes); None means it could not be sent."""
        from .drift import Drift

        drift = Drift.between(found.key, found.request_json, found.response, live, by="verify")
        with self._lock:
            self.drift.append(drift)
        return drift.classes

    def unplayed(self) -> list[Key]:
        """Recordings of the suite cassette this test owns but did not use (``fail_unplayed``)."""
        if self.test_id is None:
            return []
        return [key for key, tests, _ in self.cassette.index(owned=True) if self.test_id in tests and key not in self.used]

    def count_use(self, key: Key, replayed: bool) -> None:
        """A recording a forked child of the test replayed or recorded: the test's to own, as if it had itself."""
        with self._lock:
            if replayed:
                self.replayed += 1
                self.used[key] = self.used.get(key, 0) + 1
            else:
                self.recorded += 1
                self.used.setdefault(key, 0)

    def count_miss(self, miss: CassetteMiss) -> None:
        """Remember a miss (a request without recording, or a blocked connection), so it fails the test (from a
        forked child too: it is sent to the process that runs the tests)."""
        with self._lock:
            self.missed += 1
            self.misses.append(miss)
        tell_parent(miss)

    def record(self, request: CanonicalRequest, key: Key, response: RecordedResponse, latency_s: float) -> None:
        """Keep a live answer, unless it is a rate limit or server error (those are retried live). A refresh
        compares the answer it overwrites with the new one (``drift``)."""
        if self._on_live is not None:
            self._on_live(self, request, response.status, latency_s)
        if not is_kept(response.status):
            self._not_kept(key)
            return
        fingerprint, occurrence = key
        # A re-recording (a refresh, an expired answer) keeps the other tests that own the answer: it replaces this
        # test's share, not theirs, which a later prune relies on. Read on the record path only: a miss is cheap to ask.
        replaced, earlier_owners = self._replaced(key)
        if replaced is not None and response.status in _KEY_REFUSED and replaced.response.status < 400:
            with self._lock:  # the key was refused (expired, another account's): no reason to lose the answer
                self.unrecorded += 1
            return
        owners = tuple(sorted({*earlier_owners, self.test_id})) if self.test_id else ()
        interaction = Interaction.of(
            request,
            response,
            fingerprint=fingerprint,
            occurrence=occurrence,
            recorded_at=utc_stamp(),
            latency_ms=round(latency_s * 1000, 1),
            tests=owners,
        )
        try:
            kept = shaped(self.before_record, interaction)
            if kept is None:  # the hook chose not to keep it; the caller still gets the live answer
                self._not_kept(key)
                return
            interaction = kept
            with self._lock:
                keep_instant, self._keep_instant = self._keep_instant, False
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
            self._refreshed.keys.add(interaction.key)
            self.recorded += 1
            self.used.setdefault(interaction.key, 0)
            self.interactions.append(interaction)
            self.how.append("recorded")
        if IN_CHILD:
            tell_parent_used(*interaction.key, replayed=False)
        if replaced is not None:
            from .drift import Drift

            drift = Drift.between(key, interaction.request_json, replaced.response, interaction.response)
            with self._lock:
                self.drift.append(drift)

    def _replaced(self, key: Key) -> tuple[Interaction | None, tuple[str, ...]]:
        """The recording a re-recording overwrites (a refresh's, an expired one's, another worker's just written), and
        its owners. A damaged one (a hand edit, a half-written row) is overwritten too, since re-recording is how it is
        repaired; it keeps the owners the store can still read."""
        try:
            earlier = self.cassette.get(*key)
        except CassetteError as error:
            if not _damaged(error):
                raise
            return None, _owners_of_damaged(self.cassette, key)
        return earlier, earlier.tests if earlier is not None else ()

    def _not_kept(self, key: Key) -> None:
        """Count a live answer not kept; with ``repeats="sequence"`` its occurrence goes to the next identical request
        (the SDK's retry), since a replay never sees the answer that was not kept."""
        with self._lock:
            self.unrecorded += 1
            if self.repeats != "cache":
                counted = self._plain.get(key[0], key[0])
                heapq.heappush(self._freed.setdefault(counted, []), key[1])

    def keep_clock_read(self, read: bool) -> None:
        """At the end of a frozen test: store whether it read the clock, so its replays freeze only if it did.

        A new instant takes this run's answer; a reused one only ever turns to "read" (what earlier runs
        recorded under it may have read the clock). Replays write nothing.
        """
        if self.test_id is None or self.mode.fails_on_miss:
            return
        if self._instant_kept:
            self.cassette.put_clock_read(self.test_id, read)
        elif read and self.frozen_at is not None and not self._keep_instant:
            self.cassette.put_clock_read(self.test_id, True)
