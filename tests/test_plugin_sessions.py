"""Whole pytest sessions as users run them: record, replay offline with the server stopped, strict misses."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from conftest import cassette_file, printed, write_ini

APP_TESTS = '''
import json
import openai

BASE_URL = "{base_url}"


def ask(prompt, **extra):
    client = openai.OpenAI(base_url=BASE_URL, max_retries=3)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}], **extra)


def test_capital(llm_cache):
    answer = ask("What is the capital of France?")
    print("ANSWER", answer.model_dump_json())
    assert answer.choices[0].message.content.startswith("echo[0]: What is the capital of France?")


def test_twice_is_one_recording(llm_cache):
    first = ask("Tell me a joke")
    second = ask("Tell me a joke")
    assert first.model_dump() == second.model_dump()
    print("COUNTS", llm_cache.replayed, llm_cache.recorded)
'''


MODE_PROBE = '''
def test_mode(llm_cache):
    print("MODE", llm_cache.mode)
'''


def _write_app(pytester: pytest.Pytester, base_url: str, extra: str = "") -> None:
    pytester.makepyfile(test_app=APP_TESTS.format(base_url=base_url) + extra)



def test_record_then_replay_offline_then_strict_miss(llm_pytester, server, env):
    _write_app(llm_pytester, server.base_url)

    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert len(server.requests) == 2, "the repeated joke is served from the cache, not asked twice"
    recorded.stdout.fnmatch_lines(["llm_replay: 1 replayed, 2 recorded, 0 missed in 2 tests (mode record, cassette cassettes/llm_cache.sqlite3)"])
    assert cassette_file(llm_pytester).exists()

    # CI: no key, no server. Every call replays, byte for byte the answer the app saw when recording.
    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=2)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER") and printed(replayed, "ANSWER")
    replayed.stdout.fnmatch_lines(["*COUNTS 2 0", "llm_replay: 3 replayed, 0 recorded, 0 missed in 2 tests (mode replay, *)"])

    # A prompt that was never recorded fails at once, with what was asked and the closest recording.
    _write_app(llm_pytester, server.base_url, extra='''

def test_new_prompt(llm_cache):
    ask("What is the capital of Spain?", temperature=0.2)
''')
    missed = llm_pytester.runpytest()
    missed.assert_outcomes(passed=2, failed=1)
    missed.stdout.fnmatch_lines([
        "*llm_replay.CassetteMiss: no recording for this request (mode 'replay': the network is not used)",
        f"*request:   POST {server.base_url.replace('/v1', '')}/v1/chat/completions",
        "*model:     gpt-4o-mini",
        "*prompt:    (user) What is the capital of Spain?",
        "*cassette:  *cassettes/llm_cache.sqlite3 (2 recordings)",
        "*closest recording: POST */v1/chat/completions, recorded * by test_app.py::test_capital*",
        '*~ body.messages[[]0].content: "What is the capital of France?" -> "What is the capital of Spain?"',
        "*+ body.temperature: 0.2",
        "*to record it: pytest --llm-mode=record test_app.py::test_new_prompt  (with the API key set)",
        "*llm_replay: 3 replayed, 0 recorded, 1 missed in 3 tests*",
    ])
    assert "APIConnectionError" not in missed.stdout.str(), "the SDK must not retry or wrap the miss"


def test_miss_fails_even_when_the_app_catches_exceptions(llm_pytester, server, env):
    env.setenv("CI", "1")
    _write_app(llm_pytester, server.base_url, extra='''

def test_app_with_fallback(llm_cache):
    try:
        answer = ask("never recorded").choices[0].message.content
    except Exception:
        answer = "fallback"
    assert answer == "fallback"


def test_app_with_bare_except(llm_cache):
    try:
        ask("never recorded either")
    except:  # noqa: E722
        pass
''')
    result = llm_pytester.runpytest("-k", "fallback or bare_except")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*llm_replay.CassetteMiss: no recording for this request*",
        "*prompt:    (user) never recorded",
        "*llm_replay.CassetteMiss (caught by the code under test, still a failure):",
        "*prompt:    (user) never recorded either",
    ])
    assert server.requests == [], "replay never touches the network"


MISSES_IN_FIXTURES = '''

@pytest.fixture
def asks_in_teardown(llm_cache):
    yield
    try:
        ask("asked in teardown")
    except:  # noqa: E722
        pass


@pytest.fixture
def asks_in_setup(llm_cache):
    try:
        ask("asked in setup")
    except:  # noqa: E722
        pass


@pytest.fixture
def raises_in_setup(llm_cache):
    ask("raised in setup")


def test_teardown_swallows(asks_in_teardown):
    pass


def test_setup_swallows(asks_in_setup):
    pass


def test_miss_in_the_test_is_told_once(llm_cache):
    ask("raised in the test")


def test_miss_in_setup_is_told_once(raises_in_setup):
    pass
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_miss_a_fixture_swallows_in_teardown_fails_the_teardown_and_each_miss_is_told_once(llm_pytester, server, env, workers):
    env.setenv("CI", "1")
    _write_app(llm_pytester, server.base_url, extra="\n\nimport pytest\n" + MISSES_IN_FIXTURES)
    result = llm_pytester.runpytest("-k", "swallows or told_once", *workers)
    # the teardown's test passed and its teardown is an error (as pytest counts a fixture's); nothing is failed twice
    result.assert_outcomes(passed=1, failed=2, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    summary = sorted(line.split(" - ")[0] for line in result.outlines if line.startswith(("FAILED ", "ERROR ")))
    assert summary == [
        "ERROR test_app.py::test_miss_in_setup_is_told_once", "ERROR test_app.py::test_teardown_swallows",
        "FAILED test_app.py::test_miss_in_the_test_is_told_once", "FAILED test_app.py::test_setup_swallows",
    ]
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_teardown_swallows*",
        "llm_replay.CassetteMiss (caught by the code under test, still a failure):",
        "no recording for this request*",
        "*prompt:    (user) asked in teardown",
    ])
    result.stdout.fnmatch_lines(["*_ test_setup_swallows _*", "llm_replay.CassetteMiss (caught by the code under test*", "*prompt:    (user) asked in setup"])
    assert server.requests == [], "replay never touches the network"


REFRESH_FIRST = '''
import pathlib
import openai

BASE_URL = "{base_url}"


def ask():
    return openai.OpenAI(base_url=BASE_URL, max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "the one question"}}])


def test_asks_first(llm_cache):
    ask()


def test_then_signals(llm_cache):  # after the first test's teardown: its recording is written
    pathlib.Path("asked").write_text("")
'''

REFRESH_LATER = '''
import pathlib
import time

from test_first import ask


def test_asks_later_in_another_worker(llm_cache):
    deadline = time.monotonic() + 60
    while not pathlib.Path("asked").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ask()
'''


def test_refresh_under_xdist_asks_each_question_once_for_the_whole_run(llm_pytester, server, env):
    """A question another worker re-recorded in this run replays: workers refresh since the controller's start."""
    llm_pytester.makepyfile(test_first=REFRESH_FIRST.format(base_url=server.base_url), test_later=REFRESH_LATER)
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=3)
    (llm_pytester.path / "asked").unlink()
    before = len(server.requests)
    refreshed = llm_pytester.runpytest("--llm-mode=refresh", "-n", "2", "--dist=loadfile")
    refreshed.assert_outcomes(passed=3)
    assert len(server.requests) == before + 1, "the later worker replayed what the first re-recorded"
    refreshed.stdout.fnmatch_lines(["llm_replay: 1 replayed, 1 recorded, 0 missed in 3 tests (mode refresh, *)"])


def test_refresh_rerecords_and_off_bypasses(llm_pytester, server, env):
    _write_app(llm_pytester, server.base_url)
    env.setenv("OPENAI_API_KEY", server.api_key)
    first = llm_pytester.runpytest("-s", "-k", "capital")
    first.assert_outcomes(passed=1)

    refreshed = llm_pytester.runpytest("-s", "-k", "capital", "--llm-mode=refresh")
    refreshed.assert_outcomes(passed=1)
    refreshed.stdout.fnmatch_lines(["llm_replay: 0 replayed, 1 recorded, 0 missed*"])
    assert printed(refreshed, "ANSWER") != printed(first, "ANSWER"), "refresh asked the server again (its answers carry a request number)"

    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        stored = db.execute("SELECT body FROM interactions").fetchall()
    assert len(stored) == 1, "refresh overwrote the recording instead of adding one"
    assert json.loads(stored[0][0])["id"] in printed(refreshed, "ANSWER")[0]

    before = len(server.requests)
    bypassed = llm_pytester.runpytest("-s", "-k", "capital", "--llm-mode=off")
    bypassed.assert_outcomes(passed=1)
    assert len(server.requests) == before + 1
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        assert db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 1, "off records nothing"


def test_mode_precedence_cli_over_env_over_marker_over_config_over_ini(llm_pytester, env):
    write_ini(llm_pytester, "llm_mode = off\n")
    llm_pytester.makepyfile(test_mode=MODE_PROBE)
    assert "MODE off" in llm_pytester.runpytest("-s").stdout.str()
    llm_pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef llm_cache_config():\n    return {'mode': 'record'}\n")
    assert "MODE record" in llm_pytester.runpytest("-s").stdout.str(), "llm_cache_config over ini"
    llm_pytester.makepyfile(test_mode="import pytest\n" + MODE_PROBE.replace("def test_mode", "@pytest.mark.llm_cache(mode='refresh')\ndef test_mode"))
    assert "MODE refresh" in llm_pytester.runpytest("-s").stdout.str(), "marker over llm_cache_config"
    env.setenv("LLM_REPLAY_MODE", "off")
    assert "MODE off" in llm_pytester.runpytest("-s").stdout.str(), "env over marker"
    assert "MODE replay" in llm_pytester.runpytest("-s", "--llm-mode=replay").stdout.str(), "command line over env"


OVERRIDES = {
    "sub/conftest.py": "import pytest\n\n@pytest.fixture\ndef llm_cache_config():\n    return {'mode': 'off'}\n",
    "sub/test_in_sub.py": "def test_sub(llm_cache):\n    print('MODE sub', llm_cache.mode)\n",
    "test_plain.py": "def test_plain(llm_cache):\n    print('MODE plain', llm_cache.mode)\n",
    "test_overrides.py": '''
import pytest


@pytest.fixture(scope="module")
def llm_cache_config():
    return {"mode": "refresh"}


def test_module(llm_cache):
    print("MODE module", llm_cache.mode)


class TestClass:
    @pytest.fixture
    def llm_cache_config(self, request, tmp_path):  # function-scoped, asking for other fixtures
        return {"mode": "off" if tmp_path.is_dir() else "refresh"}

    def test_class(self, llm_cache):
        print("MODE class", llm_cache.mode)

    @pytest.mark.llm_cache
    def test_marked_and_asking_for_the_config_too(self, request, llm_cache_config):
        recorder = request.getfixturevalue("llm_cache")
        print("MODE marked", recorder.mode, llm_cache_config["mode"])
''',
}


def test_an_override_that_raises_is_that_tests_setup_error_not_a_usage_error(llm_pytester):
    llm_pytester.makepyfile(test_raising='''
import pytest


@pytest.fixture
def llm_cache_config():
    raise ValueError("the override broke")


def test_it(llm_cache):
    pass
''', test_other="def test_other(llm_cache):\n    pass\n")
    result = llm_pytester.runpytest("--llm-mode=record")
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(["*ValueError: the override broke*"])


def test_llm_cache_config_is_read_where_it_is_overridden_and_nowhere_else(llm_pytester):
    """The fixture is asked for only where a conftest, module or class overrides it; each place gets its own."""
    write_ini(llm_pytester, "llm_mode = record\n")
    for name, text in OVERRIDES.items():
        (llm_pytester.path / name).parent.mkdir(exist_ok=True)
        (llm_pytester.path / name).write_text(text)
    result = llm_pytester.runpytest("-s", "--setup-show")
    result.assert_outcomes(passed=5)
    assert sorted(printed(result, "MODE")) == ["class off", "marked off off", "module refresh", "plain record", "sub off"]
    set_up = [line.split()[1] for line in result.outlines if "SETUP" in line and "llm_cache_config" in line]
    assert sorted(set_up) == ["F", "F", "F", "M"], f"the three overrides set up (the class's twice), the default never: {set_up}"


def test_a_marked_test_sets_up_the_llm_cache_fixture_visible_where_it_is(llm_pytester):
    """A marker sets up the ``llm_cache`` a test would get by naming it: a conftest's override in its folder (wrapping
    the plugin's), the plugin's elsewhere; for every case of a parametrized test."""
    write_ini(llm_pytester, "llm_mode = record\n")
    marked = """
import pytest

@pytest.mark.llm_cache
@pytest.mark.parametrize("i", range(2))
def test_it(i, request):
    print("GOT", WHERE, i, type(request.getfixturevalue("llm_cache")).__name__)
"""
    (llm_pytester.path / "sub").mkdir()
    (llm_pytester.path / "sub" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef llm_cache(llm_cache):\n    print('WRAPPED', llm_cache.mode)\n    yield llm_cache\n"
    )
    (llm_pytester.path / "sub" / "test_sub.py").write_text(marked.replace("WHERE", "'sub'"))
    (llm_pytester.path / "test_top.py").write_text(marked.replace("WHERE", "'top'"))
    result = llm_pytester.runpytest("-s")
    result.assert_outcomes(passed=4)
    assert printed(result, "WRAPPED") == ["record", "record"], "the folder's override wraps both of its cases"
    assert sorted(printed(result, "GOT")) == ["sub 0 Recorder", "sub 1 Recorder", "top 0 Recorder", "top 1 Recorder"]


def test_a_marker_on_the_module_or_the_class_gives_its_tests_llm_cache_unasked(llm_pytester):
    """Tests that neither name ``llm_cache`` nor carry its marker get it from their module's or class's marker, every
    one of them (the collection asks each module and class once); a test under neither does not."""
    write_ini(llm_pytester, "llm_mode = record\n")
    llm_pytester.makepyfile(
        test_module_marked="import pytest\n\npytestmark = pytest.mark.llm_cache\n\ndef test_one():\n    pass\n\ndef test_two():\n    pass\n",
        test_class_marked=(
            "import pytest\n\n@pytest.mark.llm_cache\nclass TestMarked:\n    def test_one(self):\n        pass\n\n"
            "    def test_two(self):\n        pass\n\nclass TestPlain:\n    def test_plain(self):\n        pass\n\n"
            "def test_plain():\n    pass\n"
        ),
    )
    result = llm_pytester.runpytest("--setup-show")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*llm_replay: 0 replayed, 0 recorded, 0 missed in 4 tests*"])
    set_up = [line for line in result.outlines if "SETUP" in line and "llm_cache" in line]
    assert len(set_up) == 4, f"the four marked-above tests set llm_cache up, the two plain ones do not: {set_up}"


MARKER_LEVELS = '''
import pytest

pytestmark = pytest.mark.llm_cache(mode="off")


def probe(request, where):
    recorder = request.getfixturevalue("llm_cache")  # set up by the marker, not asked for by name
    print("MARKED", where, recorder.mode, "memory" if recorder.cassette.path is None else "suite")


def test_module_marker(request):
    probe(request, "module")


@pytest.mark.llm_cache(mode="record", scope="test")
def test_own_marker_wins_over_the_modules(request):
    probe(request, "own")


@pytest.mark.llm_cache(scope="test")
class TestMarkedClass:
    def test_class_marker(self, request):
        probe(request, "class")

    @pytest.mark.llm_cache(mode="refresh")
    def test_own_marker_wins_over_the_classes(self, request):
        probe(request, "own-in-class")
'''


def test_the_closest_llm_cache_marker_decides_whether_on_the_test_its_class_or_its_module(llm_pytester):
    """As ``get_closest_marker``: the test's own marker, else its class's, else its module's (each marker's options
    whole, never merged)."""
    write_ini(llm_pytester, "llm_mode = record\n")  # below a marker's mode (--llm-mode would be above it)
    llm_pytester.makepyfile(test_levels=MARKER_LEVELS)
    result = llm_pytester.runpytest("-s")
    result.assert_outcomes(passed=4)
    assert sorted(printed(result, "MARKED")) == [
        "class record memory",  # the class's marker (scope test) is the closest: the module's mode=off does not merge in
        "module off suite",
        "own record memory",
        "own-in-class refresh suite",  # nor the class's scope
    ]


def test_default_mode_follows_ci(llm_pytester, env):
    llm_pytester.makepyfile(test_mode=MODE_PROBE)
    assert "MODE record" in llm_pytester.runpytest("-s").stdout.str()
    env.setenv("CI", "true")
    assert "MODE replay" in llm_pytester.runpytest("-s").stdout.str()
    env.setenv("CI", "woodpecker")  # some CI services set their own name: a value not understood is still CI, offline
    assert "MODE replay" in llm_pytester.runpytest("-s").stdout.str()
    for not_ci in ("false", "0", " OFF ", ""):
        env.setenv("CI", not_ci)
        assert "MODE record" in llm_pytester.runpytest("-s").stdout.str()


def test_a_mode_on_the_command_line_takes_any_case_as_the_environment_and_ini_do(llm_pytester, env):
    llm_pytester.makepyfile(test_mode=MODE_PROBE)
    assert "MODE replay" in llm_pytester.runpytest("-s", "--llm-mode=REPLAY").stdout.str()
    env.setenv("LLM_REPLAY_MODE", "Refresh")
    assert "MODE refresh" in llm_pytester.runpytest("-s").stdout.str()


def test_unknown_mode_is_a_usage_error(llm_pytester, env):
    llm_pytester.makepyfile(test_x="def test_x(llm_cache): pass")
    for given in ("replays", ""):
        result = llm_pytester.runpytest(f"--llm-mode={given}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*unknown llm_replay mode '{given}' (from --llm-mode); use one of: replay, record, refresh, off*"])
    env.setenv("LLM_REPLAY_MODE", "strict")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown llm_replay mode 'strict' (from environment variable LLM_REPLAY_MODE); use one of: replay, record, refresh, off*"])


def test_marker_config_fixture_and_autouse(llm_pytester, server):
    write_ini(llm_pytester, "llm_autouse = true\n")
    llm_pytester.makeconftest('''
import pytest

@pytest.fixture
def llm_cache_config():
    return {"scope": "test"}
''')
    llm_pytester.makepyfile(test_cfg=f'''
import openai
import pytest

def ask():
    return openai.OpenAI(base_url="{server.base_url}", api_key="{server.api_key}").chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])

def test_config_fixture_scope(llm_cache):
    ask(); ask()
    assert (llm_cache.recorded, llm_cache.replayed) == (1, 1)
    assert llm_cache.cassette.path is None

def test_autouse_without_requesting(request):
    ask()
    assert request.getfixturevalue("llm_cache").recorded == 1

@pytest.mark.llm_cache(scope="suite", mode="record")
def test_marker_wins_over_config(llm_cache):
    ask()
    assert llm_cache.cassette.path is not None
    assert [i.request.model for i in llm_cache.interactions] == ["gpt-4o-mini"]
''')
    result = llm_pytester.runpytest()
    result.assert_outcomes(passed=3)
    assert len(server.requests) == 3, "scope='test' starts every test with an empty in-memory cache"
    assert cassette_file(llm_pytester).exists()


def test_bad_marker_option_names_the_option(llm_pytester):
    llm_pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.llm_cache(scop="test")
def test_typo(llm_cache):
    pass
''')
    result = llm_pytester.runpytest()
    assert result.ret != 0
    assert re.search(r"unknown llm_cache option\(s\) 'scop' in @pytest.mark.llm_cache", result.stdout.str() + result.stderr.str())


def test_bad_option_values_name_the_value_and_the_choices(llm_pytester):
    write_ini(llm_pytester, "llm_scope = module\n")
    llm_pytester.makepyfile(test_bad="def test_nothing():\n    pass\n")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: scope in ini option llm_scope must be one of test, suite, not 'module'"])

    write_ini(llm_pytester)
    llm_pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.llm_cache(repeats="always")
def test_marked(llm_cache):
    pass
''')
    result = llm_pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*repeats in @pytest.mark.llm_cache on test_bad.py::test_marked must be one of cache, sequence, not 'always'*"])


def test_corrupt_cassette_fails_clearly_and_is_left_alone(llm_pytester, server):
    cassette = cassette_file(llm_pytester)
    cassette.parent.mkdir()
    cassette.write_bytes(b"this is not a database, it is a text file that someone committed by mistake\n" * 10)
    before = cassette.read_bytes()
    _write_app(llm_pytester, server.base_url)
    result = llm_pytester.runpytest("--llm-mode=record")  # two tests, one message: the session stops at its start
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "CassetteError" in line]
    assert len(errors) == 1 and f"{cassette} is not an llm_replay cassette (not an SQLite file)" in errors[0]
    assert "Move it away, or point --llm-cassette" in errors[0] and "CassetteError" not in result.stdout.str()
    assert cassette.read_bytes() == before
    assert server.requests == []


def test_cassette_path_from_the_command_line_and_the_ini(llm_pytester, server, env):
    _write_app(llm_pytester, server.base_url)
    env.setenv("OPENAI_API_KEY", server.api_key)
    result = llm_pytester.runpytest("-k", "capital", "--llm-cassette=recordings/cli.sqlite3")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*cassette recordings/cli.sqlite3)"])
    assert (llm_pytester.path / "recordings" / "cli.sqlite3").exists()

    write_ini(llm_pytester, "llm_cassette = recordings/ini.sqlite3\n")
    result = llm_pytester.runpytest("-k", "capital")
    result.stdout.fnmatch_lines(["*cassette recordings/ini.sqlite3)"])
    assert (llm_pytester.path / "recordings" / "ini.sqlite3").exists()
    assert not cassette_file(llm_pytester).exists()


def test_a_recording_test_in_a_replaying_session_never_sends_the_placeholder_key(llm_pytester, server, env):
    env.setenv("CI", "true")  # the session replays, so OPENAI_API_KEY gets llm_replay's placeholder
    llm_pytester.makepyfile(test_marked=f'''
import openai
import pytest

@pytest.mark.llm_cache(mode="record")
def test_records_with_whatever_key_there_is(llm_cache):
    openai.OpenAI(base_url="{server.base_url}", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
''')
    result = llm_pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CassetteMiss: not sent: this test records (mode 'record') but the request to * carries llm_replay's placeholder*"])
    assert server.requests == [], "nothing was sent, so no 401 could be recorded"
    assert not cassette_file(llm_pytester).exists(), "nothing was recorded, so no cassette was written"
