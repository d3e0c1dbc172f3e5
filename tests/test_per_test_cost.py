"""What llm_replay does once instead of per test keeps every guarantee (docs/performance.md).

Marked tests get ``llm_cache`` at collection instead of through an autouse fixture: it must still be active
before the test's own fixtures, and only for the tests that ask. A session keeps counts, not recordings:
after many replays no Recorder is alive and only the cassette's few most recent recordings are (and those read
ahead for the next tests), and what the run keeps per test is plain values the garbage collector stops scanning.
Settings are worked out once per distinct configuration: different markers in one session still get their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import printed, write_ini

import llm_replay

from llm_replay.engine.settings import CacheSettings, Mode
from llm_replay.pytest_plugin.suite import Suite
from llm_replay.engine.read_ahead import WINDOW
from llm_replay.stores.recent import RECENT_KEPT

ORDER_TESTS = '''
import openai
import pytest


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", api_key="{api_key}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


@pytest.fixture
def greeting():
    return ask("asked by a fixture")  # before the test body: llm_cache must already be active


@pytest.mark.llm_cache
def test_marked_with_a_calling_fixture(greeting, request):
    recorder = request.getfixturevalue("llm_cache")  # set up already: the marker put it before the other fixtures
    print("COUNTS", recorder.recorded, recorder.replayed)


def test_unmarked_calls_the_server_directly():
    print("UNMARKED", ask("not intercepted"))
'''


def test_a_marked_tests_own_fixtures_run_inside_its_cassette_and_unmarked_tests_are_untouched(llm_pytester, server, env):
    write_ini(llm_pytester, "llm_freeze_time = false\n")  # freezegun's start-up per recording test is not what is tested
    llm_pytester.makepyfile(test_order=ORDER_TESTS.format(base_url=server.base_url, api_key=server.api_key))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert printed(recorded, "COUNTS") == ["1 0"], "the fixture's call was recorded by the marked test's cassette"
    assert len(server.requests) == 2, "one live call recorded, one unmarked call straight to the server"
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 1 recorded, 0 missed in 1 test *"])

    server.stop()
    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay", "-k", "marked_with")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "COUNTS") == ["0 1"], "the fixture's call replays offline"
    replayed.stdout.fnmatch_lines(["llm_replay: 1 replayed, 0 recorded, 0 missed in 1 test *"])


MANY_TESTS = '''
import gc

import openai
import pytest

from llm_replay.engine.recorder import Recorder
from llm_replay.model.interaction import Interaction
from llm_replay.pytest_plugin.plugin import SUITE


# One client for every test (building one makes an SSL context, ~50 ms here): what the session keeps is the subject.
CLIENT = openai.OpenAI(base_url="{base_url}", api_key="{api_key}", max_retries=0)


@pytest.mark.parametrize("n", range({count}))
def test_prompt(n, llm_cache):
    CLIENT.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": f"question {{n}}"}}])
    assert llm_cache.replayed + llm_cache.recorded == 1


def test_zz_after_all_the_others(request):
    for _ in range(3):  # a pass stops tracking a tuple whose items it no longer tracks: one pass per level of nesting
        gc.collect()
    alive = gc.get_objects()
    print("ALIVE", sum(isinstance(o, Recorder) for o in alive), sum(isinstance(o, Interaction) for o in alive))
    books = request.config.stash[SUITE].outcome._tests
    kept = request.config.pluginmanager.get_plugin("terminalreporter").stats  # pytest keeps every report
    usages = [report.llm_replay for reports in kept.values() for report in reports if getattr(report, "llm_replay", None)]
    print("TRACKED", len(books), sum(map(gc.is_tracked, books.values())), len(usages), sum(map(gc.is_tracked, usages)))
'''


def test_a_session_keeps_counts_not_recorders_or_recordings(llm_pytester, server, env):
    count = RECENT_KEPT + WINDOW + 16  # more than the recent ones and a read-ahead window together
    write_ini(llm_pytester, "llm_freeze_time = false\n")
    llm_pytester.makepyfile(test_many=MANY_TESTS.format(count=count, base_url=server.base_url, api_key=server.api_key))
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # llm_replay alone: its own objects are what is counted
    ours = ("-p", "llm_replay.pytest_plugin.plugin")
    assert llm_pytester.runpytest_subprocess(*ours, "--llm-mode=record", "-k", "not zz").ret == 0  # only replay's objects count
    server.stop()

    replayed = llm_pytester.runpytest_subprocess(*ours, "-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=count + 1)
    recorders, interactions = map(int, printed(replayed, "ALIVE")[0].split())
    assert recorders == 0, "a finished test's recorder (and the recordings it replayed) is not kept"
    assert 0 < interactions <= RECENT_KEPT + WINDOW, f"{interactions} recordings alive after {count} replays"
    books, tracked_books, usages, tracked_usages = map(int, printed(replayed, "TRACKED")[0].split())
    assert books == usages == count, "every finished test is in the books, and its usage on its teardown report"
    assert tracked_books == tracked_usages == 0, "what a session keeps per test is plain values the garbage collector no longer scans"
    replayed.stdout.fnmatch_lines([f"llm_replay: {count} replayed, 0 recorded, 0 missed in {count} tests*"])


def test_settings_are_worked_out_once_per_distinct_configuration(tmp_path):
    suite = Suite(mode=Mode.RECORD, mode_is_explicit=False, cassette_spec=str(tmp_path / "c.sqlite3"), defaults=CacheSettings(), rootdir=tmp_path)

    plain = suite.settings_for({}, None)
    assert suite.settings_for({}, None) is plain, "the same options give the very same settings"
    ignoring = suite.settings_for({"match_ignore": ["metadata.id"]}, None)
    assert ignoring.match_ignore == ("metadata.id",) and plain.match_ignore == ()
    assert suite.settings_for({"match_ignore": ("metadata.id",)}, None) is ignoring, "a list and a tuple are the same option"
    assert suite.settings_for({}, pytest.mark.llm_cache(mode="replay").mark).mode is Mode.REPLAY
    assert suite.settings_for({}, None).mode is Mode.RECORD, "a marker's mode does not leak into the next test"

    unhashable = suite.settings_for({"match_ignore": {"metadata.id"}}, None)  # a set cannot be a key: read each time
    assert unhashable.match_ignore == ("metadata.id",)


UNUSED_TESTS = '''
import sys

ON_FIRST_USE = (
    "vcr", "sqlite3", "freezegun", "llm_replay.layers", "llm_replay.engine.recorder", "llm_replay.engine.read_ahead",
    "llm_replay.model.fingerprint", "llm_replay.stores.sqlite", "llm_replay.stores.memory",
    # what only a replay, a compared answer or a live call needs: the prices, the drift tally, the progress lines
    "llm_replay.engine.pricing", "llm_replay.engine.drift_tally", "llm_replay.pytest_plugin.progress",
    "llm_replay.engine.project",  # the command's view of a project
)


def test_one():
    assert True


def test_zz_last():
    print("LOADED", sorted(name for name in sys.modules if name.startswith(ON_FIRST_USE)))
'''


def test_a_session_whose_tests_never_use_llm_cache_loads_no_engine_layer_nor_vcrpy(llm_pytester, env):
    """README: installed but unused, the plugin costs pytest its options and books; the engine, SQLite and vcrpy load
    on first use, as do the prices, the drift tally and the live-call lines (their ini options are still checked at
    the start). A replay session (CI) guards the network and holds placeholder keys and the proxy fence from its start:
    those layers only."""
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # llm_replay alone: no other plugin loads what is looked for
    llm_pytester.makepyfile(test_unused=UNUSED_TESTS)
    only_ours = ("-s", "-p", "no:cacheprovider", "-p", "llm_replay.pytest_plugin.plugin")
    recording = llm_pytester.runpytest_subprocess(*only_ours, "--llm-mode=record")
    recording.assert_outcomes(passed=2)
    assert printed(recording, "LOADED") == ["[]"]
    replaying = llm_pytester.runpytest_subprocess(*only_ours, "--llm-mode=replay")
    replaying.assert_outcomes(passed=2)
    guard = ["llm_replay.layers", "llm_replay.layers.network", "llm_replay.layers.offline_children", "llm_replay.layers.placeholders"]
    assert printed(replaying, "LOADED") == [str(guard)]


LOADERS_TESTS = '''
import sys

import pytest


@pytest.mark.llm_cache
def test_uses_the_engine():
    loaders = {name: type(module.__loader__).__name__ for name, module in sys.modules.items() if name.startswith("llm_replay.")}
    print("ENGINE", loaders["llm_replay.engine.recorder"], loaders["llm_replay.pytest_plugin.plugin"])


def test_own_asserts_are_still_rewritten():
    answer = {"text": "Paris"}
    assert answer["text"] == "Lyon"
'''


def test_llm_replays_modules_load_the_ordinary_way_and_the_users_tests_are_still_rewritten(llm_pytester, env):
    """pytest marks a plugin's package for assertion rewriting and loads every module of it through its own, slower
    importer (~3 M instructions a module); llm_replay unmarks itself, and only itself. The package is found on the
    path here, as a regular install has it (pytest does not mark a package an editable install's finder provides)."""
    env.setenv("PYTHONPATH", str(Path(llm_replay.__file__).parent.parent))
    llm_pytester.makepyfile(test_loaders=LOADERS_TESTS)
    result = llm_pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--llm-mode=record")
    result.assert_outcomes(passed=1, failed=1)
    assert printed(result, "ENGINE") == ["SourceFileLoader SourceFileLoader"]
    result.stdout.fnmatch_lines(["*AssertionError: assert 'Paris' == 'Lyon'*"])  # pytest's rewritten message


def test_unmarking_takes_only_llm_replay_off_pytests_rewrite_list_and_no_paths_add_no_rules(monkeypatch):
    """The unmarking leaves every other marked package (another plugin's) to pytest, and forgets pytest's cached
    answers; an empty ``match_ignore`` (the ini's default, which no longer loads the matching rules) keeps the rules
    already given."""
    from llm_replay.pytest_plugin import _load_without_assertion_rewriting

    class AssertionRewritingHook:  # pytest's importer as the unmarking finds it: by its name and its two attributes
        def __init__(self) -> None:
            self._must_rewrite = {"llm_replay", "pytest_asyncio", "llm_replay_extras"}
            self._marked_for_rewrite_cache = {"llm_replay.engine": True, "pytest_asyncio.plugin": True}

        def find_spec(self, *args: object) -> None:
            return None

    hook = AssertionRewritingHook()
    monkeypatch.setattr("sys.meta_path", [hook, *sys.meta_path])
    _load_without_assertion_rewriting()
    assert hook._must_rewrite == {"pytest_asyncio", "llm_replay_extras"} and hook._marked_for_rewrite_cache == {}

    widened = CacheSettings().updated({"match_ignore": ["metadata.id"]}, "ini option llm_match_ignore")
    assert widened.updated({"match_ignore": []}, "a marker").match_ignore == ("metadata.id",)
    assert widened.updated({"match_ignore": "messages[*].name"}, "a marker").match_ignore == ("metadata.id", "messages[*].name")
