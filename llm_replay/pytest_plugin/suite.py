"""The pytest session's side of llm_replay: the shared cassette, per-test settings and the totals."""

from __future__ import annotations

import gc
import os
import shlex
import signal
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

from ..engine.settings import CacheSettings, Mode, positional_options_error
from ..model.runs import RunOutcome, Usage
from ..model.scrub import Scrubber

if TYPE_CHECKING:  # imported where used: merely loading the pytest plugin must stay cheap
    import pytest

    from ..engine.drift_tally import DriftTally
    from ..engine.pricing import PriceBook
    from ..engine.read_ahead import ReadAhead
    from ..engine.adoption import AdoptionIndex
    from ..engine.host_patterns import HostPatterns
    from ..errors import NetworkBlocked
    from ..layers.network import NetworkGuard
    from ..layers.offline_children import OfflineChildren
    from ..engine.matching import MatchRules, RekeyIndex
    from ..engine.recorder import Recorder, Refreshed
    from ..stores.memory import InMemoryCache
    from ..engine.savings import Savings
    from ..stores.base import Store
    from ..stores.ledger import RunLedger


class Totals:
    """What every test of the session did, added up (counters, not a value: a plain class)."""

    def __init__(self) -> None:
        self.replayed = self.recorded = self.missed = self.tests = 0

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


class _Plan:
    """What the tests with one set of settings share (Suite._plan): whether each gets a fresh in-memory cassette,
    the match rules and the suite cassette's indexes under them, the hosts never recorded, and the classes to build
    (loaded on first use). A plain class, as WallClock: defining a NamedTuple costs every session's start-up ~0.5 M
    instructions."""

    __slots__ = ("in_memory", "rules", "rekey", "adoption", "ignored_hosts", "recorder", "memory_store")

    def __init__(
        self,
        in_memory: bool,
        rules: MatchRules,
        rekey: RekeyIndex | None,
        adoption: AdoptionIndex | None,
        ignored_hosts: HostPatterns,
        recorder: type[Recorder],
        memory_store: type[InMemoryCache],
    ) -> None:
        self.in_memory, self.rules, self.rekey, self.adoption = in_memory, rules, rekey, adoption
        self.ignored_hosts, self.recorder, self.memory_store = ignored_hosts, recorder, memory_store


class WallClock:
    """A test's wall clock: frozen at ``instant`` (None: real), whether that instant is new (stored with the
    test's first recording), and whether it runs real because the test's recording never read it."""

    __slots__ = ("instant", "new", "unread")

    def __init__(self, instant: datetime | None, new: bool = False, unread: bool = False) -> None:
        self.instant, self.new, self.unread = instant, new, unread


class Suite:
    """One pytest session's llm_replay state. A plain class, as are its totals and books: none is a value to compare
    or print, and generating dataclass methods for the three cost every session's import ~9 M instructions."""

    def __init__(
        self,
        mode: Mode,
        mode_is_explicit: bool,
        cassette_spec: str,
        defaults: CacheSettings,
        rootdir: Path,
        *,
        scrubber: Scrubber | None = None,
        prices: PriceBook | None = None,
        fail_on_drift: tuple[frozenset[str], str] = (frozenset(), "--llm-fail-on-drift"),
        on_live: Callable[..., None] | None = None,
        report_path: Path | None = None,
    ) -> None:
        self.mode = mode
        self.mode_is_explicit = mode_is_explicit
        self.cassette_spec = cassette_spec  # an absolute path or a URL (stores.spec)
        self.defaults = defaults
        self.rootdir = rootdir
        self.totals = Totals()
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self._cassette: Store | None = None
        self._readonly = True
        # when a refresh began, as recordings store their time: a worker takes its controller's (pytest_configure_node)
        self.refresh_since = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._refreshed: Refreshed | None = None  # made by the first recorder (the module loads with it)
        self._rekey_indexes: dict[MatchRules, RekeyIndex] = {}
        # Decided once per distinct configuration, not per test: most suites have one or a handful.
        self._settings: dict[Hashable, CacheSettings] = {}
        self._adoption_indexes: dict[tuple[MatchRules, tuple[str, ...]], AdoptionIndex] = {}
        self._plans: dict[CacheSettings, _Plan] = {}
        self._overridden_configs: dict[Any, bool] = {}  # module or class -> overrides llm_cache_config
        # the llm_cache tests in the order they run, once collected; None while none is (a session without them
        # never loads the read-ahead)
        self.read_ahead: ReadAhead | None = None
        self.adoptions: Counter[str] = Counter()  # adopt mode: shape change (old → new) → recordings
        # -- the run's bookkeeping (ownership, prune, stats); under xdist only the controller writes it --
        # llm_replay's folder in pytest's cache dir, made on first use; None without the cache provider: its default
        # place then, under the rootdir, so that llm-replay prune and stats find it all the same
        self.ledger_folder: Callable[[], Path] | None = None
        self.run_uid = uuid.uuid4().hex
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        # the session as a prune meanwhile sees it (engine.live_sessions): a pytest-xdist worker takes its controller's
        self.live_session = (self.run_uid, os.getpid(), self.started_at)
        self._registered = False
        self.prune = False
        self.autouse = False  # ini llm_autouse: every test uses llm_cache
        self.outcome = RunOutcome()
        self.end_lines: list[str] = []
        self._sigterm: Any = None  # the SIGTERM handler we replaced, while the cassette may be written
        self.prices = prices  # the ini's; None: genai-prices' alone, built when the savings are worked out
        # -- what the run tells a person at its end --
        # refresh's and verify's compared answers, tallied from the first (a session that compares none never loads
        # the tally); the drift classes that fail the session and the option that named them
        self.drift: DriftTally | None = None
        self._fail_on_drift = fail_on_drift
        self.on_live = on_live  # progress while recording (pytest_plugin.progress)
        self.report_path = report_path
        self.report_tests: list[dict[str, Any]] = []  # filled only with a report_path
        self.outcomes: dict[str, str] = {}
        # -- a replay session is offline for every test, not only those using llm_cache --
        self.blocked: list[NetworkBlocked] = []
        # blocked and caught where no report can fail for them (hooks around the collection and the session), as text:
        # a worker's go to the controller, and fail the session
        self.blocked_aside: list[str] = []
        self._offline: tuple[NetworkGuard, OfflineChildren] | None = None

    def go_offline(self, advice: Callable[[], str]) -> None:
        """Replay: block the network for the whole session (patched once), and fence off child processes. ``advice``:
        what a blocked attempt outside llm_cache should do, asked when one is blocked."""
        from ..layers.network import NetworkGuard
        from ..layers.offline_children import OfflineChildren

        from ..engine.host_patterns import HostPatterns

        from ..stores.spec import hosts

        # Ignored hosts always go live; the suite cassette's own server (a shared Redis) is no live service.
        reachable = (*self.defaults.allow_hosts, *HostPatterns(self.defaults.ignore_hosts).hosts(), *hosts(self.cassette_spec))
        guard = NetworkGuard(reachable, on_blocked=self._count_blocked, advice=advice)
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

    def _count_blocked(self, error: NetworkBlocked) -> None:
        """An attempt blocked outside llm_cache, kept for the test's reports (from a forked child: sent to this process)."""
        from ..engine.forked_children import tell_parent

        self.blocked.append(error)
        tell_parent(error)

    def take_blocked(self) -> list[NetworkBlocked]:
        """The attempts blocked outside llm_cache since the last call (a test's, read when it ends)."""
        taken, self.blocked[:] = list(self.blocked), []
        return taken

    def set_blocked_aside(self) -> None:
        """Keep the attempts blocked since the last report for the end of the session: no test made them."""
        if self.blocked:
            self.blocked_aside += map(str, self.take_blocked())

    def blocked_aside_lines(self) -> list[str]:
        """The end of the session's word on attempts that no test, fixture or collected file made (they fail the session)."""
        if not self.blocked_aside:
            return []
        count = len(self.blocked_aside)
        return [
            f"llm_replay: {count} blocked network attempt{'s' if count > 1 else ''} caught outside any test, fixture or collected "
            "file (in a plugin's or conftest.py's hook), still a failure of the session; the first:",
            self.blocked_aside[0],
        ]

    def config_overridden(self, item: Any) -> bool:
        """Whether a conftest, module or class overrides ``llm_cache_config`` where ``item`` is (asked once per module
        or class: fixtures are defined there, never on a test)."""
        parent = item.parent
        overridden = self._overridden_configs.get(parent)
        if overridden is None:
            definitions = item.session._fixturemanager.getfixturedefs("llm_cache_config", item) or ()
            overridden = self._overridden_configs[parent] = bool(definitions) and definitions[-1].func.__module__ != _PLUGIN_MODULE
        return overridden

    def settings_for(self, config_fixture: Mapping[str, Any], marker: pytest.Mark | None, item: Any = None) -> CacheSettings:
        """Settings by precedence: explicit CLI/env mode > marker > ``llm_cache_config`` > ini > default.

        Worked out once per distinct pair of options (the same options always give the same settings); errors name
        ``item``, the test.
        """
        if marker is None:
            marker_kwargs: Mapping[str, Any] = _NO_OPTIONS
        elif marker.args:  # pytest keeps them apart from the keyword options, which alone are read
            raise positional_options_error(marker.args, _marker_source(item))
        else:
            marker_kwargs = marker.kwargs
        try:
            # None (an override that forgot to return its dict) goes to _frozen, which cannot take it, and is reported
            # by _settings_now (a type check here would cost every test ~150 instructions).
            config_key = _frozen(config_fixture) if config_fixture or config_fixture is None else ()
            key: Hashable = (config_key, _frozen(marker_kwargs) if marker_kwargs else ())
            return self._settings[key]
        except (TypeError, AttributeError):  # an unhashable option value, or no dict: worked out (and checked) each time
            return self._settings_now(config_fixture, marker_kwargs, item)
        except KeyError:
            settings = self._settings[key] = self._settings_now(config_fixture, marker_kwargs, item)
            return settings

    def _settings_now(self, config_fixture: Mapping[str, Any], marker_kwargs: Mapping[str, Any], item: Any) -> CacheSettings:
        settings = self.defaults.updated(config_fixture, "the llm_cache_config fixture")
        settings = settings.updated(marker_kwargs, _marker_source(item))
        if self.mode_is_explicit:
            settings = settings.updated({"mode": self.mode}, "--llm-mode")
        return settings

    def cassette(self, mode: Mode) -> Store:
        """The suite cassette, opened on first use; read-only while only replaying."""
        readonly = mode.read_only
        if self._cassette is not None and self._readonly and not readonly:
            self._cassette.close()
            self._cassette = None
        if self._cassette is None:
            from ..stores.spec import open_store

            self._cassette = open_store(self.cassette_spec, readonly=readonly, scrubber=self.scrubber)
            self._readonly = readonly
            if not readonly:
                self._interrupt_on_sigterm()
            self._register()
        return self._cassette

    def _register(self) -> None:
        """Note this session as running against the suite cassette, once, so that a prune meanwhile keeps what its
        tests replay; the record of its run, at its end, ends it."""
        if not self._registered:
            from ..engine.live_sessions import register

            self._registered = True
            register(self._ledger(), *self.live_session)

    def _interrupt_on_sigterm(self) -> None:
        """While the cassette may be written, SIGTERM ends the session as Ctrl-C does, so the cassette is closed as
        one plain file (Python's default dies on the spot, leaving the log beside it). A handler of the user's stays."""
        if self._sigterm is not None or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._sigterm = signal.signal(signal.SIGTERM, partial(_raise_keyboard_interrupt, os.getpid()))

    @property
    def cassette_is_file(self) -> bool:
        """Whether the suite cassette is a file (not a server named by a URL)."""
        from ..stores.spec import scheme

        return scheme(self.cassette_spec) is None

    def check_cassette(self) -> None:
        """Check the suite cassette file once, for this session's mode, so that one that cannot be used (corrupt,
        too new, not ours, read-only while recording) stops the session with one message. Changes nothing."""
        if self.cassette_is_file and Path(self.cassette_spec).exists():
            from ..stores.sqlite import SQLiteCache

            SQLiteCache.check(Path(self.cassette_spec), writable=not self.mode.read_only)

    def recorder(self, settings: CacheSettings, nodeid: str) -> Recorder:
        """A Recorder for one test, over the suite cassette or a fresh in-memory one."""
        plan = self._plans.get(settings) or self._plan(settings)
        if plan.in_memory:
            cassette: Store = plan.memory_store(self.scrubber)
        else:
            cassette = self.cassette(settings.mode)
            if self.read_ahead is not None:
                self.read_ahead.before(cassette, nodeid)
        clock = self.clock(settings, cassette, nodeid)
        return plan.recorder(
            cassette,
            settings.mode,
            repeats=settings.repeats,
            rules=plan.rules,
            rekey=plan.rekey,
            adoption=plan.adoption,
            test_id=nodeid,
            frozen_at=clock.instant,
            keep_instant=clock.new,
            clock_unread=clock.unread,
            refreshed=self._refreshed or self._refreshed_keys(),
            record_hint=lambda: self.record_command(nodeid, plan.in_memory),
            on_live=self.on_live,
            max_age=settings.max_age,
            on_expired=settings.on_expired,
            before_record=settings.before_record,
            ignore_hosts=plan.ignored_hosts,
        )

    def _refreshed_keys(self) -> Refreshed:
        from ..engine.recorder import Refreshed

        self._refreshed = Refreshed(self.refresh_since)
        return self._refreshed

    def _plan(self, settings: CacheSettings) -> _Plan:
        """What every test with these settings shares, worked out once: the match rules and the suite cassette's
        indexes under them (built on first use, shared by the tests with the same rules; an in-memory cassette has none)."""
        from ..engine.adoption import AdoptionIndex, AdoptRules
        from ..engine.host_patterns import HostPatterns
        from ..engine.matching import MatchRules, RekeyIndex
        from ..engine.recorder import Recorder
        from ..stores.memory import InMemoryCache

        in_memory = settings.scope == "test"
        rules = MatchRules(settings.match_ignore, settings.before_fingerprint)  # equal rules share the indexes below
        rekey = adoption = None
        if not in_memory:
            rekey = self._rekey_indexes.get(rules)
            if rekey is None:
                rekey = self._rekey_indexes[rules] = RekeyIndex(rules)
            adoption_key = (rules, settings.adopt_body_paths)
            adoption = self._adoption_indexes.get(adoption_key)
            if adoption is None:
                adoption = self._adoption_indexes[adoption_key] = AdoptionIndex(AdoptRules(rules, settings.adopt_body_paths))
        plan = self._plans[settings] = _Plan(in_memory, rules, rekey, adoption, HostPatterns(settings.ignore_hosts), Recorder, InMemoryCache)
        return plan

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
        if settings.scope == "test" or settings.mode is Mode.REFRESH:
            return _new_clock()
        stored, read = cassette.stored_clock(nodeid)
        if settings.mode.fails_on_miss and stored is None:
            return _NOT_FROZEN
        if settings.mode.fails_on_miss and read is False:
            return _UNREAD
        return WallClock(stored) if stored else _new_clock()

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
        missing = " is missing: no such file" if self.mode.fails_on_miss and self.cassette_is_file and not Path(self.cassette_spec).exists() else ""
        return (
            f"llm_replay: {t.replayed} replayed, {t.recorded} recorded, {t.missed} missed in {t.tests} test{'s' if t.tests != 1 else ''} "
            f"(mode {self.mode}, cassette {self.shown_cassette()}{missing})"
        )

    def shown_cassette(self) -> str:
        """The suite cassette as the summary names it: a path relative to the rootdir, a URL without its password."""
        from ..stores.spec import redacted, scheme

        if scheme(self.cassette_spec) is None and Path(self.cassette_spec).is_relative_to(self.rootdir):
            return str(Path(self.cassette_spec).relative_to(self.rootdir))
        return redacted(self.cassette_spec)

    def adoption_lines(self) -> list[str]:
        """Adopt mode's end-of-session list: each shape change (old → new) and how many recordings it re-keyed."""
        if not self.adoptions:
            return []
        total = sum(self.adoptions.values())
        lines = [f"llm_replay: adopted {total} recording{'s' if total != 1 else ''} (re-keyed to the new request shape, written once; commit the cassette):"]
        return lines + [f"  {count} × {change}" for change, count in sorted(self.adoptions.items())]

    def test_finished(self, recorder: Recorder) -> None:
        """Add up a finished test: counts, its drift, and its calls when a report is asked for."""
        self.totals.add(recorder)
        if recorder.drift:
            self._drift_tally().add_all(recorder.test_id, recorder.drift)
        if self.report_path is not None:
            from .report_data import test_record

            self.report_tests.append(test_record(recorder))

    def note_outcome(self, nodeid: str, when: str, outcome: str) -> None:
        """A test's outcome as the report shows it: failed if any phase failed, skipped if its call was."""
        if self.report_path is None or self.outcomes.get(nodeid) == "failed":
            return
        if outcome in ("failed", "skipped") or when == "call":
            self.outcomes[nodeid] = outcome

    def end_of_session_lines(self, verbose: bool) -> list[str]:
        """Everything the session says at its end, after the counts line: adoptions, drift, savings, unused, failure."""
        drift = self.drift
        lines = self.adoption_lines() + (drift.lines(verbose) if drift else []) + self.end_lines
        failure = drift.failure_line() if drift else None
        return lines + ([failure] if failure else [])

    def fails_on_drift(self) -> bool:
        """Whether answers drifted by a class that --llm-fail-on-drift (or its ini) names."""
        return self.drift is not None and bool(self.drift.failing())

    def _drift_tally(self) -> DriftTally:
        if self.drift is None:
            from ..engine.drift_tally import DriftTally

            self.drift = DriftTally(*self._fail_on_drift)
        return self.drift

    def write_report(self) -> str | None:
        """Write the HTML report, if one was asked for; the line saying where."""
        if self.report_path is None:
            return None
        from .html_report import write_report

        # The test records are scrubbed (report_data); the summary names tests and blocked hosts too, and the
        # outcomes are looked up by the scrubbed ids the records carry.
        scrub = self.scrubber
        summary = [scrub.text(line) for line in [self.summary(), *self.end_of_session_lines(verbose=True)] if line]
        outcomes = {scrub.test_id(nodeid): outcome for nodeid, outcome in self.outcomes.items()}
        try:
            write_report(self.report_path, self.report_tests, outcomes, summary)
        except OSError as error:
            return f"llm_replay: could not write the report to {self.report_path}: {error}; give --llm-report a writable path"
        return f"llm_replay: report written to {self.report_path}"

    def track_adoptions(self, recorder: Recorder) -> None:
        """Add what adopt re-keyed in a finished test."""
        if recorder.adoptions:
            self.adoptions.update(recorder.adoptions)

    def usage_of(self, recorder: Recorder) -> Usage | None:
        """What a finished test used of the suite cassette, as plain values for its teardown report (which carries it
        to the xdist controller): the recordings it recorded or replayed, and whether it refreshed (every live answer
        kept: one not kept, a 5xx, leaves its earlier recordings its own, and used by it, so a prune keeps them) or could
        write.
        The test's Recorder, with every interaction it saw, is dropped after this."""
        if recorder.cassette is not self._cassette:  # a test's in-memory cassette (scope='test'): nothing to own
            return None
        owned = recorder.used
        if recorder.unrecorded:  # a live answer not kept (a 5xx, a refused key, a model that raised): what it owned stays
            owned = {**dict.fromkeys(recorder.unplayed(), 0), **owned}
        used = tuple((fingerprint, occurrence, count) for (fingerprint, occurrence), count in owned.items())
        return used, recorder.mode is Mode.REFRESH and not recorder.unrecorded, recorder.mode in (Mode.RECORD, Mode.REFRESH, Mode.ADOPT), recorder.mode is not Mode.OFF

    def finish_run(self) -> None:
        """Settle ownership, record the run, count what went unused, prune if asked: once, at the end.

        Reading every recording's owners allocates tens of thousands of short-lived objects, freed as they go; with the
        cyclic garbage collector on, they would set off full collections of the whole session's heap (~0.1 s each at
        1,000 tests), so it pauses for this.
        """
        if not self.totals.tests and not self.prune:
            return
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._finish_run()
        finally:
            if was_enabled:
                gc.enable()

    def _finish_run(self) -> None:
        from ..engine.pruning import finish_run

        saved = self.replay_savings()
        self.close()
        self.end_lines = [saved.line()] if saved else []
        self.end_lines += finish_run(
            self.cassette_spec,
            self._ledger(),
            self.outcome,
            uid=self.run_uid,
            started_at=self.started_at,
            rootdir=self.rootdir,
            prune=self.prune,
        )

    def _ledger(self) -> RunLedger:
        """The suite cassette's run bookkeeping, in pytest's cache dir (or where the cache provider would keep it)."""
        from ..stores.ledger import RunLedger, ledger_path

        folder = self.rootdir / ".pytest_cache" / "d" / "llm_replay"  # the cache provider's own default place
        if self.ledger_folder is not None:
            try:
                folder = self.ledger_folder()
            except OSError:
                pass  # a read-only checkout: writing there fails too, and finish_run says the bookkeeping was not kept
        return RunLedger(ledger_path(folder, self.cassette_spec))

    def replay_savings(self) -> Savings | None:
        """Tokens, API time and cost that this run's replays of the suite cassette saved; None if nothing replayed."""
        replays = {key: count for key, count in self.outcome.replays().items() if count}
        if not replays:
            return None
        from ..engine.pricing import PriceBook
        from ..engine.savings import replay_savings
        from ..stores.spec import open_store

        # not `self._cassette or ...`: a store's truth is its len(), which counts every row of the cassette
        cassette = self._cassette if self._cassette is not None else open_store(self.cassette_spec, readonly=True)
        try:
            return replay_savings(cassette, replays, self.prices or PriceBook())
        finally:
            if cassette is not self._cassette:
                cassette.close()

    def worker_report(self) -> dict[str, Any]:
        """What a pytest-xdist worker sends the controller besides its test reports: its counts, drift, adoptions, report
        records and the blocked attempts no report failed for."""
        return {
            "totals": self.totals.as_counts(),
            "drift": self.drift.as_data() if self.drift else None,
            "adoptions": dict(self.adoptions),
            "report": self.report_tests,
            "blocked_aside": self.blocked_aside,
        }

    def merge_worker(self, report: Mapping[str, Any]) -> None:
        """Add a finished worker's counts, drift, adoptions, report records and blocked attempts, so the controller's summary
        covers the whole run."""
        self.totals.merge(report["totals"])
        self.adoptions.update(report["adoptions"])
        if report["drift"]:
            self._drift_tally().merge(report["drift"])
        self.report_tests.extend(report["report"])
        self.blocked_aside += report.get("blocked_aside", ())

    def close(self) -> None:
        """Release the cassette at the end of the session (as one plain file), and SIGTERM back to what it was."""
        if self._cassette is not None:
            self._cassette.close()
            self._cassette = None
        if self._sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None


def _raise_keyboard_interrupt(session_pid: int, signum: int, frame: Any) -> None:
    if os.getpid() != session_pid:  # a forked child inherited the handler: it ends as SIGTERM ends a process
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"signal {signum} (SIGTERM): llm_replay stops the session and closes the cassette")


_NOT_FROZEN, _UNREAD = WallClock(None), WallClock(None, unread=True)
_PLUGIN_MODULE = "llm_replay.pytest_plugin.plugin"  # where the default llm_cache_config is defined
_NO_OPTIONS: Mapping[str, Any] = {}  # a test without the marker (never changed)


def _marker_source(item: Any) -> str:
    """Where a marker's options came from, for their errors: the marker and the test it applies to."""
    return f"@pytest.mark.llm_cache on {item.nodeid}" if item is not None else "@pytest.mark.llm_cache"


def _new_clock() -> WallClock:
    """Frozen at the real time now, an instant stored with the test's first recording."""
    from ..engine.clock import new_instant

    return WallClock(new_instant(), new=True)


def _frozen(options: Mapping[str, Any]) -> tuple:
    """Options as a hashable key (lists as tuples); TypeError when a value cannot be hashed."""
    frozen = tuple(sorted((name, tuple(value) if isinstance(value, list) else value) for name, value in options.items()))
    hash(frozen)
    return frozen

