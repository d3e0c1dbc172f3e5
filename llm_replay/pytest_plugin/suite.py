"""The pytest session's side of llm_replay: the shared cassette, per-test settings and the totals."""

from __future__ import annotations

import shlex
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Mapping, NamedTuple

from ..engine.settings import CacheSettings, Mode
from ..model.runs import RunOutcome
from ..model.scrub import Scrubber
from .drift_log import DriftLog

if TYPE_CHECKING:  # imported where used: merely loading the pytest plugin must stay cheap
    from ..errors import NetworkBlocked
    from ..layers.network import NetworkGuard
    from ..layers.offline_children import OfflineChildren
    from ..engine.matching import MatchRules, RekeyIndex
    from ..engine.recorder import Recorder
    from ..model.interaction import Key
    from ..stores.base import Store
    from ..stores.sqlite import SQLiteCache


@dataclass
class Totals:
    """What every test of the session did, added up."""

    replayed: int = 0
    recorded: int = 0
    missed: int = 0
    tests: int = 0

    def add(self, recorder: Recorder) -> None:
        """Count one finished test."""
        self.replayed += recorder.replayed
        self.recorded += recorder.recorded
        self.missed += recorder.missed
        self.tests += 1

    def merge(self, counts: Mapping[str, int]) -> None:
        """Add the totals a pytest-xdist worker sent back (``as_counts`` on its side)."""
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + int(value))

    def as_counts(self) -> dict[str, int]:
        """The totals as plain data, to travel from an xdist worker to the controller."""
        return {"replayed": self.replayed, "recorded": self.recorded, "missed": self.missed, "tests": self.tests}


class WallClock(NamedTuple):
    """A test's wall clock: frozen at ``instant`` (None: real), whether that instant is new (stored with the
    test's first recording), and whether it runs real because the test's recording never read it."""

    instant: datetime | None
    new: bool = False
    unread: bool = False


@dataclass
class Suite:
    """One pytest session's llm_replay state."""

    mode: Mode
    mode_is_explicit: bool
    cassette_path: Path
    defaults: CacheSettings
    rootdir: Path
    totals: Totals = field(default_factory=Totals)
    scrubber: Scrubber = field(default_factory=Scrubber)
    _cassette: SQLiteCache | None = None
    _refreshed: set[tuple[str, int]] = field(default_factory=set)
    _rekey_indexes: dict[MatchRules, RekeyIndex] = field(default_factory=dict)
    # Decided once per distinct configuration, not per test: most suites have one or a handful.
    _settings: dict[Hashable, CacheSettings] = field(default_factory=dict)
    _rules: dict[CacheSettings, MatchRules] = field(default_factory=dict)
    # -- run usage (prune) --
    run_uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # under xdist, only the controller writes usage
    prune: bool = False
    outcome: RunOutcome = field(default_factory=lambda: RunOutcome(whole_suite=True))
    used: Counter[Key] = field(default_factory=Counter)
    end_lines: list[str] = field(default_factory=list)
    workers_wrote: bool = False
    # -- verify --
    drift: DriftLog = field(default_factory=DriftLog)
    fail_on_drift: frozenset[str] = frozenset()
    # -- a replay session is offline for every test, not only those using llm_cache --
    blocked: list[NetworkBlocked] = field(default_factory=list)
    _offline: tuple[NetworkGuard, OfflineChildren] | None = None

    def go_offline(self) -> None:
        """Replay: block the network for the whole session (patched once), and fence off child processes."""
        from ..layers.network import NO_FIXTURE_ADVICE, NetworkGuard
        from ..layers.offline_children import OfflineChildren

        from ..engine.host_patterns import HostPatterns

        reachable = (*self.defaults.allow_hosts, *HostPatterns(self.defaults.ignore_hosts).hosts())  # ignored hosts always go live
        guard = NetworkGuard(reachable, on_blocked=self.blocked.append, advice=NO_FIXTURE_ADVICE)
        children = OfflineChildren(reachable)
        guard.install()
        children.install()
        self._offline = guard, children

    def back_online(self) -> None:
        """The end of the session: the socket module and ``subprocess`` as they were."""
        if self._offline is not None:
            for part in self._offline:
                part.uninstall()
            self._offline = None

    def take_blocked(self) -> list[NetworkBlocked]:
        """The attempts blocked outside llm_cache since the last call (a test's, read when it ends)."""
        taken, self.blocked[:] = list(self.blocked), []
        return taken

    def settings_for(self, config_fixture: Mapping[str, Any], marker_kwargs: Mapping[str, Any]) -> CacheSettings:
        """Settings by precedence: explicit CLI/env mode > marker > ``llm_cache_config`` > ini > default.

        Worked out once per distinct pair of options (the same options always give the same settings).
        """
        try:
            key: Hashable = (_frozen(config_fixture), _frozen(marker_kwargs))
            return self._settings[key]
        except TypeError:  # an unhashable option value: worked out each time
            return self._settings_now(config_fixture, marker_kwargs)
        except KeyError:
            settings = self._settings[key] = self._settings_now(config_fixture, marker_kwargs)
            return settings

    def _settings_now(self, config_fixture: Mapping[str, Any], marker_kwargs: Mapping[str, Any]) -> CacheSettings:
        settings = self.defaults.updated(config_fixture, "the llm_cache_config fixture")
        settings = settings.updated(marker_kwargs, "@pytest.mark.llm_cache")
        if self.mode_is_explicit:
            settings = settings.updated({"mode": self.mode}, "--llm-mode")
        return settings

    def cassette(self, mode: Mode) -> SQLiteCache:
        """The suite cassette, opened on first use; read-only while only replaying."""
        readonly = mode.read_only
        if self._cassette is not None and self._cassette.readonly and not readonly:
            self._cassette.close()
            self._cassette = None
        if self._cassette is None:
            from ..stores.sqlite import SQLiteCache

            self._cassette = SQLiteCache(self.cassette_path, readonly=readonly, scrubber=self.scrubber)
        return self._cassette

    def recorder(self, settings: CacheSettings, nodeid: str) -> Recorder:
        """A Recorder for one test, over the suite cassette or a fresh in-memory one."""
        from ..engine.matching import MatchRules, RekeyIndex
        from ..engine.recorder import Recorder
        from ..stores.memory import InMemoryCache

        in_memory = settings.scope == "test"
        cassette = InMemoryCache(self.scrubber) if in_memory else self.cassette(settings.mode)
        rules = self._rules.get(settings)
        if rules is None:
            rules = self._rules[settings] = MatchRules(settings.match_ignore, settings.before_fingerprint)
        rekey = None if in_memory else self._rekey_indexes.get(rules)
        if rekey is None and not in_memory:
            rekey = self._rekey_indexes[rules] = RekeyIndex(rules)
        clock = self.clock(settings, cassette, nodeid)
        return Recorder(
            cassette,
            settings.mode,
            repeats=settings.repeats,
            rules=rules,
            rekey=rekey,
            test_id=nodeid,
            frozen_at=clock.instant,
            keep_instant=clock.new,
            clock_unread=clock.unread,
            refreshed=self._refreshed,
            record_hint=lambda: self.record_command(nodeid, in_memory),
            max_age=settings.max_age,
            on_expired=settings.on_expired,
            before_record=settings.before_record,
            ignore_hosts=settings.ignore_hosts,
        )

    def clock(self, settings: CacheSettings, cassette: Store, nodeid: str) -> WallClock:
        """How the test's wall clock runs: frozen at which instant, or real.

        Replay and record runs reuse the instant stored when the test first recorded; the first record
        run and a refresh take the real time now (stored with the test's first recording). ``off`` leaves
        the clock alone. A replay freezes only a test whose recording read the clock or may have (not
        known: recorded by an older llm_replay); one whose recording never read it, or that recorded
        nothing of its own, runs on the real clock and skips freezegun's cost. An in-memory cassette
        (scope='test') keeps nothing between tests, so those tests freeze at their real start.
        """
        if not settings.freeze_time or settings.mode is Mode.OFF:
            return WallClock(None)
        from ..engine.clock import new_instant

        if settings.scope == "test" or settings.mode is Mode.REFRESH:
            return WallClock(new_instant(), new=True)
        stored, read = cassette.stored_clock(nodeid)
        if settings.mode.read_only and stored is None:
            return WallClock(None)
        if settings.mode.read_only and read is False:
            return WallClock(None, unread=True)
        return WallClock(stored) if stored else WallClock(new_instant(), new=True)

    def record_command(self, nodeid: str, in_memory: bool) -> str:
        """The command that records what a test is missing."""
        if in_memory:
            return "this test uses scope='test' (an in-memory cache, nothing kept between runs); use scope='suite' to replay recordings"
        return f"pytest --llm-mode=record {shlex.quote(nodeid)}  (with the API key set)"

    def summary(self) -> str | None:
        """The end-of-session line, or None when no test used llm_cache."""
        if not self.totals.tests:
            return None
        t = self.totals
        try:
            shown = self.cassette_path.relative_to(self.rootdir)
        except ValueError:
            shown = self.cassette_path
        return f"llm_replay: {t.replayed} replayed, {t.recorded} recorded, {t.missed} missed in {t.tests} tests (mode {self.mode}, cassette {shown})"

    def track_drift(self, recorder: Recorder) -> None:
        """Add what verify found in a finished test."""
        for _, classes in recorder.drift:
            self.drift.add(recorder.test_id or "", classes)

    def drift_failure(self) -> str | None:
        """Why the session fails for drift (``--llm-fail-on-drift``), or None."""
        seen = self.drift.occurred(self.fail_on_drift)
        if not seen:
            return None
        return f"llm_replay: the session fails: drift in {', '.join(seen)} (--llm-fail-on-drift={','.join(sorted(self.fail_on_drift))})"

    def track_usage(self, recorder: Recorder) -> None:
        """Remember what a finished test used of the suite cassette (recorded counts as used, zero replays)."""
        if recorder.cassette.path is not None:  # the suite cassette, not a test's in-memory one
            for interaction in recorder.interactions:
                self.used[interaction.key] += 0
            self.used.update(recorder.replays_by_key)

    def finish_run(self) -> None:
        """Record the run's usage, count what it left unused, prune if asked: once, at the end."""
        from ..engine.pruning import finish_run

        if not self.totals.tests and not self.prune:
            return
        may_write = self.workers_wrote or (self._cassette is not None and not self._cassette.readonly)
        self.close()
        self.end_lines = finish_run(
            self.cassette_path,
            self.outcome,
            self.used,
            uid=self.run_uid,
            rootdir=self.rootdir,
            write_usage=may_write,
            prune=self.prune,
        )

    def worker_report(self) -> dict[str, Any]:
        """What a pytest-xdist worker sends the controller: its counts and what it used, as plain data."""
        return {
            "totals": self.totals.as_counts(),
            "used": [[fingerprint, occurrence, count] for (fingerprint, occurrence), count in self.used.items()],
            "wrote": self._cassette is not None and not self._cassette.readonly,
            "drift": self.drift.as_data(),
        }

    def merge_worker(self, report: Mapping[str, Any]) -> None:
        """Add a finished worker's report, so the controller's summary and usage cover the whole run."""
        self.totals.merge(report["totals"])
        for fingerprint, occurrence, count in report["used"]:
            self.used[(fingerprint, occurrence)] += count
        self.workers_wrote = self.workers_wrote or bool(report["wrote"])
        self.drift.merge(report["drift"])

    def close(self) -> None:
        """Release the cassette at the end of the session."""
        if self._cassette is not None:
            self._cassette.close()
            self._cassette = None


def _frozen(options: Mapping[str, Any]) -> tuple:
    """Options as a hashable key (lists as tuples); TypeError when a value cannot be hashed."""
    frozen = tuple(sorted((name, tuple(value) if isinstance(value, list) else value) for name, value in options.items()))
    hash(frozen)
    return frozen
