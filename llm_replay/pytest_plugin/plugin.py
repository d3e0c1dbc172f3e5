"""pytest wiring: options, ini keys, the marker, the fixtures and the summary. No logic of its own."""

from __future__ import annotations

import sys
import warnings
from functools import partial
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from ..engine.drift_classes import DRIFT_CLASSES, parse_drift_classes
from ..engine.settings import DEFAULT_CASSETTE, INI_KEYS, INI_SOURCES, CacheSettings, Mode, session_mode
from ..errors import CassetteError, CassetteMiss, NetworkBlocked, RecordingExpired
from ..model.runs import changes_nothing
from ..model.scrub import Scrubber
from .suite import Suite

if TYPE_CHECKING:  # the engine and the layers load on first use: an installed but unused plugin costs pytest nothing
    from ..engine.pricing import PriceBook
    from ..engine.recorder import Recorder
    from ..layers import activation  # loaded by _activation on first use (named here for the layer rule and for readers)

# Typed by annotation, not by subscripting: ``StashKey[Suite]()`` builds a typing alias at import, ~0.1 ms each.
SUITE: pytest.StashKey[Suite] = pytest.StashKey()
IN_USE: pytest.StashKey[_InUse] = pytest.StashKey()
_PLACEHOLDERS: pytest.StashKey[Any] = pytest.StashKey()
SLOW_CALL_S = 5.0  # a live call this slow is shown even without -v (ini llm_slow_call)
# The test pytest is running: a stack, as a test may run a whole pytest session in-process (pytester).
_RUNNING: list[pytest.Item] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm_replay", "llm_replay: record and replay LLM calls")
    group.addoption(
        "--llm-mode",
        default=None,  # any case, as LLM_REPLAY_MODE and ini llm_mode: checked with them in pytest_configure
        help="replay (strict, offline), record (record misses), refresh (re-record all), off (bypass), "
        "adopt (offline; re-key recordings an SDK upgrade moved to another URL), "
        "verify (replay, and also call live to report drift; writes nothing). "
        "Default: env LLM_REPLAY_MODE, ini llm_mode, else replay when CI is set, else record.",
    )
    group.addoption(
        "--llm-cassette",
        default=None,
        metavar="PATH|URL",
        help=f"the suite cassette: a file (default: {DEFAULT_CASSETTE} under the rootdir) or redis://host:6379/0?prefix=myapp.",
    )
    group.addoption(
        "--llm-prune",
        action="store_true",
        default=False,
        help="at the end, delete recordings whose owning tests all passed in this run without them (any selection is safe).",
    )
    group.addoption(
        "--llm-fail-on-drift",
        default=None,
        metavar="CLASSES",
        help=f"fail the session when refreshed or verified answers drifted by any of these classes (comma-separated: {', '.join(DRIFT_CLASSES)}).",
    )
    group.addoption("--llm-report", default=None, metavar="PATH.html", help="write one self-contained HTML page of every test's LLM calls.")
    parser.addini("llm_slow_call", f"seconds after which a live call is shown as it finishes even without -v (default {SLOW_CALL_S:g}).", default=None)
    parser.addini("llm_fail_on_drift", "drift classes that fail the session (see --llm-fail-on-drift).", default=None)
    parser.addini("llm_mode", "default llm_replay mode: replay, record, refresh, off, adopt or verify.", default=None)
    parser.addini("llm_cassette", f"the suite cassette: a file relative to the rootdir (default {DEFAULT_CASSETTE}) or a redis:// URL.", default=None)
    parser.addini("llm_autouse", "use llm_cache in every test, not only those that request it.", type="bool", default=False)
    parser.addini("llm_scope", "default llm_cache scope: suite (the SQLite cassette) or test (in memory).", default="suite")
    parser.addini("llm_repeats", "cache (identical requests share one answer) or sequence (n-th request, n-th answer).", default="cache")
    # -- issue 5: the LangChain layer --
    parser.addini("llm_layers", "where llm_cache answers: http (any SDK), langchain (LangChain's global cache), or both.", default="http")
    # Deterministic replay: the frozen clock and the matching rules.
    parser.addini("llm_freeze_time", "freeze the wall clock at each test's recorded instant (default true).", type="bool", default=True)
    parser.addini(
        "llm_match_ignore",
        "JSON body paths left out of matching, one a line (e.g. metadata.request_id, messages[*].name).",
        type="linelist",
        default=[],
    )
    parser.addini(
        "llm_adopt_body_paths",
        "JSON body paths an SDK upgrade may change that --llm-mode=adopt still re-keys, one a line (same syntax as llm_match_ignore).",
        type="linelist",
        default=[],
    )
    # Safety: secrets and network (docs/safety.md).
    parser.addini("llm_secret_env", "extra environment variable names or globs whose values are scrubbed from cassettes.", type="linelist", default=[])
    parser.addini("llm_secret_patterns", "regular expressions whose matches are scrubbed from cassettes (replaced by <scrubbed>).", type="linelist", default=[])
    parser.addini(
        "llm_prices",
        "prices that override genai-prices' in the saved-cost estimate, one model a line: 'MODEL: INPUT OUTPUT' (US$ per million tokens).",
        type="linelist",
        default=[],
    )
    parser.addini("llm_allow_hosts", "hosts (names, globs, IPs, networks) a test may reach while replaying, besides loopback.", type="linelist", default=[])
    # Recordings grow old: expiry, shaping what is stored, tests that leave recordings unplayed (docs/verify-and-age.md).
    parser.addini("llm_max_age", "recordings older than this expire (e.g. 30d, 12h, 90s); default: never.", default=None)
    parser.addini("llm_on_expired", "what an expired recording does: warn (replay it), fail the test, or refresh (re-record it).", default="warn")
    parser.addini("llm_before_record", "package.module:function given each interaction before it is written; returns it, changed, or None.", default=None)
    parser.addini("llm_ignore_hosts", "hosts (names or name:port, globs) always called live: never recorded nor replayed.", type="linelist", default=[])
    parser.addini("llm_fail_unplayed", "fail a test that did not replay every recording it owns.", type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llm_cache(scope='suite'|'test', mode=..., repeats='cache'|'sequence', match_ignore=[...], freeze_time=True, "
        "before_fingerprint=None, layer='http'|'langchain'|'http,langchain', max_age='30d', on_expired='warn'|'fail'|'refresh', "
        "before_record=None, ignore_hosts=[...], fail_unplayed=False, adopt_body_paths=[...]): "
        "record and replay this test's LLM calls.",
    )
    try:
        mode, explicit = session_mode(config.getoption("--llm-mode"), config.getini("llm_mode"))
        ini = {option: _ini(config, key) for option, key in INI_KEYS.items()}
        defaults = CacheSettings(mode=mode).updated(ini, INI_SOURCES)  # each option's error names its ini key
        autouse = _ini(config, "llm_autouse")
        scrubber = Scrubber(env_names=tuple(config.getini("llm_secret_env")), patterns=tuple(config.getini("llm_secret_patterns")))
        prices = _price_book(config.getini("llm_prices"))
        fail_on_drift = _fail_on_drift(config)
        slow_call = _seconds(config.getini("llm_slow_call"), "ini option llm_slow_call", SLOW_CALL_S)
        cassette = _cassette_spec(config)
    except (ValueError, CassetteError) as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[SUITE] = Suite(
        mode=mode,
        mode_is_explicit=explicit,
        cassette_spec=cassette,
        defaults=defaults,
        rootdir=Path(config.rootpath),
        scrubber=scrubber,
        prices=prices,
        fail_on_drift=fail_on_drift,
        on_live=partial(_show_live_call, config, slow_call),
        report_path=_report_path(config),
    )
    config.stash[SUITE].prune = config.getoption("--llm-prune")
    config.stash[SUITE].autouse = autouse
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _REFRESH_SINCE in workerinput:  # a pytest-xdist worker: one refresh with its siblings
        config.stash[SUITE].refresh_since = workerinput[_REFRESH_SINCE]
        config.stash[SUITE].live_session = tuple(workerinput[_LIVE_SESSION])  # noted as the controller's session
    config.stash[SUITE].ledger_folder = _ledger_folder(config)
    try:  # one message for the session, not one error per test (and before pytest-xdist starts workers)
        config.stash[SUITE].check_cassette()
    except CassetteError as error:
        raise pytest.UsageError(f"llm_replay.CassetteError: {error}") from None
    if not hasattr(config, "workerinput"):  # a pytest-xdist worker's reports reach the controller, which keeps the books
        config.pluginmanager.register(_RunWatcher(config.stash[SUITE]), "llm_replay_run_watcher")
    if mode.offline:
        from ..layers.offline_children import without_offline_proxies
        from ..layers.placeholders import placeholder_keys

        # A child of a replay session that replays too has its own guard: the proxy fence is for other programs.
        without_offline_proxies()
        # Clients built at import time (module-level openai.OpenAI()) need a key before any fixture runs.
        config.stash[_PLACEHOLDERS] = placeholder_keys()
        config.stash[_PLACEHOLDERS].__enter__()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> Iterator[None]:
    """Offline around every plugin's and conftest.py's own session start (pluggy calls the last registered first);
    what they try belongs to no test: set aside for the end of the session."""
    suite = session.config.stash.get(SUITE, None)
    if suite is not None and suite.mode.offline:
        suite.go_offline(partial(_advice_outside_llm_cache, session.config))
    try:
        return (yield)
    finally:
        if suite is not None:
            suite.set_blocked_aside()


def _advice_outside_llm_cache(config: pytest.Config) -> str:
    """What a blocked attempt outside llm_cache should do: one in a test of this session (its setup, call or
    teardown) asks for the fixture; where none runs (a file's import, a hook) the call belongs in a test."""
    from ..layers.network import NO_FIXTURE_ADVICE, NO_TEST_ADVICE

    return NO_FIXTURE_ADVICE if _RUNNING and _RUNNING[-1].config is config else NO_TEST_ADVICE


def pytest_collection_finish(session: pytest.Session) -> None:
    """The llm_cache tests in the order they will run: what the suite cassette reads ahead of them."""
    suite = session.config.stash.get(SUITE, None)
    order = [item.nodeid for item in session.items if "llm_cache" in getattr(item, "fixturenames", ())]
    if suite is not None and order:
        from ..engine.read_ahead import ReadAhead

        suite.read_ahead = ReadAhead(order)


def pytest_unconfigure(config: pytest.Config) -> None:
    _keep_http_patches(False)  # a session that ended before its finish hook leaves no HTTP library patched either
    if SUITE in config.stash:  # a session that ended before its finish hook must not leave the socket module patched
        config.stash[SUITE].back_online()
    if _PLACEHOLDERS in config.stash:
        config.stash[_PLACEHOLDERS].__exit__(None, None, None)
        del config.stash[_PLACEHOLDERS]


def _ledger_folder(config: pytest.Config) -> Any:
    """Where the run bookkeeping goes: llm_replay's folder in pytest's cache dir (ini cache_dir), made on first use;
    None with ``-p no:cacheprovider`` (the suite then uses the folder the cache provider would have used)."""
    cache = getattr(config, "cache", None)
    return None if cache is None else lambda: cache.mkdir("llm_replay")


def _price_book(lines: list[str]) -> PriceBook | None:
    """The ini's prices, checked now; None without any (genai-prices' alone, loaded if something replayed)."""
    if not lines:
        return None
    from ..engine.pricing import PriceBook, parse_prices

    return PriceBook(parse_prices(lines, "ini option llm_prices"))


def _fail_on_drift(config: pytest.Config) -> tuple[frozenset[str], str]:
    """The drift classes that fail the session, and where they were named (for the failure line)."""
    cli, ini = config.getoption("--llm-fail-on-drift"), config.getini("llm_fail_on_drift")
    if cli is not None:
        return parse_drift_classes(cli, "--llm-fail-on-drift"), "--llm-fail-on-drift"
    return parse_drift_classes(ini or "", "ini option llm_fail_on_drift"), "ini llm_fail_on_drift"


def _show_live_call(config: pytest.Config, slow_s: float, *call: Any) -> None:
    """Progress while recording (pytest_plugin.progress), loaded at the first live call: a session without one never loads it."""
    from .progress import show_live_call

    show_live_call(config, slow_s, *call)


def _ini(config: pytest.Config, key: str) -> Any:
    """``config.getini(key)``; a value pytest cannot read as its type (a bool: ``maybe``) is an error naming the key."""
    try:
        return config.getini(key)
    except (ValueError, TypeError, pytest.UsageError) as error:  # pytest 8 raises ValueError, pytest 9 UsageError
        fix = "; write true or false" if key in _INI_BOOLS else ""
        raise ValueError(f"ini option {key}: {error}{fix}") from None


_INI_BOOLS = ("llm_autouse", "llm_freeze_time", "llm_fail_unplayed")


def _seconds(value: str | None, source: str, default: float) -> float:
    try:
        return default if value in (None, "") else float(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{source} must be a number of seconds, not {value!r}") from None


def _report_path(config: pytest.Config) -> Path | None:
    path = config.getoption("--llm-report")
    return (Path(config.invocation_params.dir) / path).resolve() if path else None


def _cassette_spec(config: pytest.Config) -> str:
    """The suite cassette: --llm-cassette (a path relative to where pytest was started), else ini llm_cassette
    (relative to the rootdir), else the default file; a URL as written."""
    from ..stores.spec import resolved

    cli = config.getoption("--llm-cassette")
    if cli is not None and not cli.strip():  # `--llm-cassette=$CASSETTE` with the variable unset: not the default
        raise pytest.UsageError(f"--llm-cassette is empty: give a file or a redis:// URL, or leave the option out for ini llm_cassette (else {DEFAULT_CASSETTE})")
    if cli:
        return resolved(cli, Path(config.invocation_params.dir))
    return resolved(config.getini("llm_cassette") or DEFAULT_CASSETTE, Path(config.rootpath))


@pytest.fixture(scope="module")
def llm_cache_config() -> dict[str, Any]:
    """Override in a conftest.py, a module or a class to configure llm_cache there (like pytest-recording's
    vcr_config); an override may have any scope and ask for other fixtures. This default is never set up:
    ``llm_cache`` asks for the fixture only where it is overridden."""
    return {}


@pytest.fixture
def llm_cache() -> Iterator[Recorder]:
    """Record and replay this test's LLM calls; yields a handle with the mode, cassette and counts."""
    # The test comes from pytest_runtest_protocol, not from ``request``: pytest 9 builds a new fixture
    # definition (a signature inspection, tens of µs) for every fixture that asks for ``request``. And the config
    # is not a parameter: a dependency costs every test a lookup and a finalizer kept on the wider fixture.
    item = _RUNNING[-1]
    suite = item.config.stash[SUITE]
    marker = _llm_cache_marker(item)
    # an override's own errors are its own (a fixture error of the test), raised before the options are checked
    config = item._request.getfixturevalue("llm_cache_config") if suite.config_overridden(item) else {}  # type: ignore[attr-defined]
    try:
        settings = suite.settings_for(config, marker, item)
        recorder = suite.recorder(settings, item.nodeid)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    except CassetteError as error:
        from ..stores.sqlite import DamagedRecording  # one damaged row (a test's instant) is its test's failure alone

        if suite.cassette_is_file and not isinstance(error, DamagedRecording):  # a file that went bad since: stop once
            pytest.exit(f"llm_replay.CassetteError: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
        pytest.fail(f"llm_replay.CassetteError: {error}", pytrace=False)  # a server may come back: each test says so
    in_use = item.stash[IN_USE] = _InUse(suite, recorder, settings.fail_unplayed)
    with _activation().activated(recorder, settings.layer, settings.allow_hosts):
        yield recorder
    suite.test_finished(recorder)
    in_use.usage = suite.usage_of(recorder)
    suite.track_adoptions(recorder)
    for expired in recorder.expired:
        warnings.warn(RecordingExpired(f"llm_replay replayed an expired recording: {expired} (on_expired = warn)"), stacklevel=1)


_ACTIVATION = "llm_replay.layers.activation"


def _activation() -> ModuleType:
    """The layers' switch, imported by the first test that uses llm_cache, then read from ``sys.modules`` (a
    ``from .x import y`` inside the fixture would cost every test the import machinery's ~12 K instructions)."""
    return sys.modules.get(_ACTIVATION) or import_module(_ACTIVATION)


class _InUse:
    """What a test's ``llm_cache`` leaves for its reports, in one stash entry (each stash access is a Python call, and
    the reports look at every phase): the suite, its Recorder, whether unplayed recordings fail it, what it used
    (at teardown)."""

    __slots__ = ("suite", "recorder", "fail_unplayed", "usage", "misses_reported")

    def __init__(self, suite: Suite, recorder: Recorder, fail_unplayed: bool) -> None:
        self.suite = suite
        self.recorder = recorder
        self.fail_unplayed = fail_unplayed
        self.usage: Any = None
        self.misses_reported = 0  # the misses a report already failed for (a teardown fails only for new ones)


def _llm_cache_marker(item: pytest.Item, of_parents: dict[Any, pytest.Mark | None] | None = None) -> pytest.Mark | None:
    """``item.get_closest_marker("llm_cache")``, the test's own markers looked at first (where a decorator puts it):
    pytest walks the chain of nodes through nested generators, ~12 K instructions, and the plugin asks at collection
    and again in the fixture. ``of_parents`` remembers each module's or class's answer (the collection asks for every
    test, most of which have no marker of their own)."""
    for mark in item.own_markers:
        if mark.name == "llm_cache":
            return mark
    if of_parents is None:
        return item.get_closest_marker("llm_cache")
    parent = item.parent
    if parent not in of_parents:
        of_parents[parent] = parent.get_closest_marker("llm_cache") if parent is not None else None
    return of_parents[parent]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[Any]:
    """Which test is running, for llm_cache; and whether vcrpy's patches stay on for it (tests without llm_cache
    run unpatched)."""
    _keep_http_patches("llm_cache" in getattr(item, "fixturenames", ()))
    _RUNNING.append(item)
    try:
        return (yield)
    finally:
        _RUNNING.pop()


def _keep_http_patches(keep: bool) -> None:
    """Leave vcrpy's patches on between tests that use llm_cache (~70 µs a test), or take them off."""
    http = sys.modules.get("llm_replay.layers.http")  # not imported yet: nothing was ever patched
    if http is not None:
        http.keep_patches_between_activations(keep)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked llm_cache (or every test, with ini llm_autouse) use the fixture without asking for it.

    Decided here once per test, where an autouse fixture would cost every test of the session a fixture call.
    """
    autouse = config.stash[SUITE].autouse  # read and checked in pytest_configure
    of_parents: dict[Any, pytest.Mark | None] = {}
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is not None and "llm_cache" not in names and (autouse or _llm_cache_marker(item, of_parents)):
            names.insert(_first_function_scoped(item, names), "llm_cache")
            _file_llm_cache_definitions(item)


def _file_llm_cache_definitions(item: pytest.Item) -> None:
    """File llm_cache's definitions with the test's other fixtures', as pytest files those the test names at collection:
    a fixture added to the names afterwards is looked up again at every setup, walking the test's nodes (~20 K
    instructions a test). The definitions are shared by every test of one function and depend only on where it is."""
    definitions = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    if "llm_cache" not in definitions:
        found = item.session._fixturemanager.getfixturedefs("llm_cache", item)
        if found:
            definitions["llm_cache"] = found


def _first_function_scoped(item: pytest.Item, names: list[str]) -> int:
    """Where an autouse fixture would sit: after the fixtures of wider scope, which are set up once and
    belong to no test's cassette (pytest orders a test's fixtures by scope, widest first)."""
    definitions = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    for index, name in enumerate(names):
        if name in definitions and definitions[name][-1].scope == "function":
            return index
    return len(names)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    if call.excinfo is not None and call.excinfo.errisinstance(CassetteMiss) and not item.config.getoption("fulltrace"):
        from .tracebacks import without_installed_packages

        miss = call.excinfo.value
        call.excinfo = pytest.ExceptionInfo.from_exc_info((type(miss), miss, without_installed_packages(call.excinfo.tb)))
    report = yield
    in_use = item.stash[IN_USE] if IN_USE in item.stash else None  # no KeyError raised for a test without llm_cache
    recorder = in_use.recorder if in_use is not None else None
    suite = in_use.suite if in_use is not None else item.config.stash.get(SUITE, None)
    forked = sys.modules.get("llm_replay.engine.forked_children")  # loaded with the engine or the guard
    if forked is not None and suite is not None:
        _count_from_children(*forked.from_children(), recorder, suite)
    blocked = suite.take_blocked() if suite is not None and suite.blocked else ()
    if report.passed and (blocked or recorder is not None):  # what the code caught, or left unplayed, still fails it
        _fail_what_was_caught(report, call.when, in_use, blocked)
    elif report.failed and recorder is not None and call.excinfo is not None and not call.excinfo.errisinstance(CassetteMiss):
        _lead_with_the_miss(report, call.when, in_use)  # type: ignore[arg-type]
    if recorder is not None and (call.when == "call" or not report.passed):  # a failed phase has said enough
        in_use.misses_reported = len(recorder.misses)
    if call.when == "teardown" and in_use is not None:
        # What the test used rides on its report (to the xdist controller too); the Recorder, with every
        # interaction it saw, goes now: a session's memory does not grow with its replays.
        report.llm_replay = in_use.usage
        del item.stash[IN_USE]
    return report


def _count_from_children(misses: list[str], used: list[tuple[Any, bool]], recorder: Recorder | None, suite: Suite) -> None:
    """What forked children of this test missed, had blocked, replayed or recorded counts as the test's own."""
    for message in misses:
        if recorder is not None:
            recorder.count_miss(CassetteMiss(message))
        else:
            suite.blocked.append(NetworkBlocked(message))
    if recorder is not None:
        for key, replayed in used:
            recorder.count_use(key, replayed)


def _fail_what_was_caught(report: pytest.TestReport, when: str, in_use: _InUse | None, blocked: list[Any] | tuple[()]) -> None:
    """Fail a phase that passed although the code caught a strict miss or a blocked attempt (CassetteMiss is a
    BaseException, but bare ``except:`` exists): the test for what happened in it, or in setup under llm_cache (the
    miss counts for the test); its setup or teardown (a fixture error) for a blocked attempt outside llm_cache, and its
    teardown for a miss there (a fixture using llm_cache, torn down after the test). In the test, recordings left
    unplayed fail it too (``fail_unplayed``)."""
    recorder = in_use.recorder if in_use is not None else None
    if recorder is not None and len(recorder.misses) > in_use.misses_reported and when != "setup":  # type: ignore[union-attr]
        report.outcome = "failed"
        miss = recorder.misses[0 if when == "call" else in_use.misses_reported]  # type: ignore[union-attr]
        report.longrepr = f"llm_replay.CassetteMiss (caught by the code under test, still a failure):\n{miss}"
    elif blocked:
        report.outcome = "failed"
        report.longrepr = f"llm_replay.NetworkBlocked (caught by the code under test, still a failure):\n{blocked[0]}"
    elif when == "call" and recorder is not None and in_use.fail_unplayed and recorder.mode is not Mode.OFF:  # type: ignore[union-attr]
        unplayed = recorder.unplayed()
        if unplayed:
            from .unplayed import unplayed_message

            report.outcome = "failed"
            report.longrepr = unplayed_message(recorder, unplayed)


def _lead_with_the_miss(report: pytest.TestReport, when: str, in_use: _InUse) -> None:
    """A phase that failed with another error after a strict miss (a library turned the CassetteMiss into its own, as
    LangChain's ``agenerate`` does into an AttributeError under ``ainvoke``): the miss is the cause, so it comes first."""
    misses = in_use.recorder.misses  # type: ignore[union-attr]
    if len(misses) > in_use.misses_reported:
        miss = misses[0 if when == "call" else in_use.misses_reported]
        report.longrepr = f"llm_replay.CassetteMiss (the code under test raised another error in its place, below):\n{miss}\n\n{report.longrepr}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[Any]:
    """A blocked attempt that a test file's or conftest.py's import caught fails that file's collection, as an
    import error would (docs/safety.md)."""
    report = yield
    suite = collector.config.stash.get(SUITE, None)
    if suite is not None and suite.blocked:
        blocked = suite.take_blocked()
        if report.passed:
            report.outcome = "failed"
            report.longrepr = f"llm_replay.NetworkBlocked (caught by the code under test, still a failure):\n{blocked[0]}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[Any]:
    """What was blocked in the collection's hooks (a plugin's or conftest's pytest_collection_modifyitems) belongs to
    no test: it is set aside for the end of the session, not charged to the first test's setup."""
    try:
        return (yield)
    finally:
        suite = session.config.stash.get(SUITE, None)
        if suite is not None:
            suite.set_blocked_aside()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    suite = terminalreporter.config.stash.get(SUITE, None)
    if suite is None:
        return
    line = suite.summary()
    if line:
        terminalreporter.write_line(line)
    for line in suite.end_of_session_lines(verbose=terminalreporter.config.getoption("verbose") > 0):
        terminalreporter.write_line(line)


# -- what the run used, for the unused-recordings count and --llm-prune --------------------------


class _RunWatcher:
    """Feeds pytest's collection and reports into the suite's RunOutcome (registered as a plugin).

    Test ids enter it as the cassette stores them (``test_id``: a secret in a parametrize id scrubbed), so owners
    compare equal and the bookkeeping holds no secret either."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.outcome = suite.outcome
        self.test_id = suite.scrubber.test_id
        self.broken: set[str] = set()
        self._scrubbed = ("", "")  # the last test's id and its scrubbed form: its call and teardown reports ask in turn

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.broken.add(report.nodeid.split("::", 1)[0])

    @pytest.hookimpl(tryfirst=True)  # before -k, -m, --deselect and --lf take tests out: what exists, not what runs
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        if config.getoption("lf", False):
            return  # --lf leaves passing tests out while collecting: a test not collected may well exist
        tests = self.suite.scrubber.test_ids(item.nodeid for item in items)
        narrowed = _narrowed_files(session, items, tests) if any("::" in arg for arg in config.args) else ()
        self.outcome.add_collected(tests, narrowed, self.broken)

    def pytest_keyboard_interrupt(self) -> None:
        """Ctrl-C, or pytest.exit() whatever its return code: the test it stopped reported nothing of what it used."""
        self.outcome.interrupted = True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        usage = getattr(report, "llm_replay", None)
        if changes_nothing(report.when, report.outcome, usage):  # two reports of three: no test id to scrub
            return
        nodeid = report.nodeid
        if self._scrubbed[0] != nodeid:
            self._scrubbed = (nodeid, self.test_id(nodeid))
        self.outcome.add_report(self._scrubbed[1], report.when, report.outcome, usage)
        self.suite.note_outcome(nodeid, report.when, report.outcome)


def _narrowed_files(session: pytest.Session, items: list[pytest.Item], tests: list[str]) -> set[str]:
    """The files, as ``tests`` (the items' ids) name them, that an argument narrowed with ``::``: not collected whole.

    Told from the paths pytest itself resolved its arguments to (``--pyargs`` module names found on sys.path, symlinks
    kept as given), matched to the items as pytest matched them (by path). Whatever cannot be told this way counts as
    narrowed: narrowing a file only keeps its recordings, while a file wrongly taken as whole loses the recordings of
    every test it seems to have lost."""
    every_file = {test.split("::", 1)[0] for test in tests}
    paths = set()
    try:
        for argument in session._initial_parts:  # pytest's CollectionArgument(path, parts, …); (path, parts) in pytest 8.0
            path, parts = (argument.path, argument.parts) if hasattr(argument, "parts") else argument[:2]
            if parts:
                paths.add(Path(path))
    except (AttributeError, TypeError, ValueError):
        return every_file  # a pytest that keeps its arguments otherwise
    narrowed, matched = set(), set()
    for item, test in zip(items, tests):
        if item.path in paths:
            narrowed.add(test.split("::", 1)[0])
            matched.add(item.path)
    return narrowed if matched == paths else every_file  # a narrowed path no item has (a Windows short path…)


@pytest.hookimpl(trylast=True)  # after pytest's own, which tears the last fixtures down: nothing writes after we close
def pytest_sessionfinish(session: pytest.Session) -> None:
    _keep_http_patches(False)
    suite = session.config.stash.get(SUITE, None)
    if suite is None:
        return
    suite.back_online()
    suite.set_blocked_aside()  # caught in other plugins' session hooks, after the last test's report
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller adds up, writes the bookkeeping, prints
        workeroutput[_XDIST_REPORT] = suite.worker_report()
        suite.close()
        return
    suite.outcome.interrupted |= session.exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
    try:
        suite.finish_run()
    except CassetteError as error:
        suite.end_lines = [f"llm_replay: could not record this run's usage: {error}"]
    suite.close()
    suite.end_lines += suite.blocked_aside_lines()
    if (suite.fails_on_drift() or suite.blocked_aside) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    written = suite.write_report()
    if written:
        suite.end_lines.append(written)


_XDIST_REPORT = "llm_replay"
_REFRESH_SINCE = "llm_replay_refresh_since"
_LIVE_SESSION = "llm_replay_live_session"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: each worker refreshes since the controller's start, so a recording another worker re-recorded in
    this run replays instead of asking the API again."""
    suite = node.config.stash.get(SUITE, None)
    if suite is not None:
        node.workerinput[_REFRESH_SINCE] = suite.refresh_since
        node.workerinput[_LIVE_SESSION] = suite.live_session


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: add a finished worker's counts to the controller's (what each test used came with its reports)."""
    suite = node.config.stash.get(SUITE, None)
    report = getattr(node, "workeroutput", {}).get(_XDIST_REPORT)
    if suite is not None and report:
        suite.merge_worker(report)
