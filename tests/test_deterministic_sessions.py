"""Deterministic replay as users meet it: prompts carrying the time, sampled sequences, ignored fields, hooks."""

from __future__ import annotations

import json
import sqlite3

import freezegun  # noqa: F401
import httpcore2  # noqa: F401
import hypothesis  # noqa: F401
import openai  # noqa: F401
import pytest
import vcr.patch  # noqa: F401
from conftest import cassette_file, printed, write_ini

APP = '''
import asyncio
import datetime
import json
import os
import socket
import time
import uuid

import openai
import pytest

BASE_URL = "{base_url}"


def ask(content, **extra):
    client = openai.OpenAI(base_url=BASE_URL, max_retries=0)
    messages = [{{"role": "user", "content": content}}]
    return client.chat.completions.create(model="gpt-4o-mini", messages=messages, **extra).choices[0].message.content


def test_prompt_with_the_time(llm_cache):
    answer = ask(f"It is {{datetime.datetime.now().isoformat()}} ({{datetime.date.today():%A}}, t={{time.time():.0f}}). Plan my day.")
    print("ANSWER", answer)
    print("FROZEN", llm_cache.frozen_at.isoformat())
    assert datetime.datetime.now(datetime.timezone.utc) == llm_cache.frozen_at


@pytest.mark.llm_cache(repeats="sequence")
def test_three_samples(llm_cache):
    answers = [ask("Pick a random number", temperature=1.0) for _ in range(int(os.environ.get("SAMPLES", "3")))]
    print("SAMPLES", json.dumps(answers))
    assert len(set(answers)) == len(answers), "each sample is its own recording"


@pytest.mark.llm_cache(match_ignore=["metadata.request_id", "messages[*].name"])
def test_ignored_fields_change_freely(llm_cache):
    client = openai.OpenAI(base_url=BASE_URL, max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        metadata={{"request_id": str(uuid.uuid4()), "app": "planner"}},
        messages=[{{"role": "user", "name": f"user-{{uuid.uuid4().hex[:8]}}", "content": "Summarise the news"}}],
    )
    print("ANSWER", answer.choices[0].message.content)


@pytest.mark.asyncio
async def test_async_call_with_timeouts(llm_cache):
    client = openai.AsyncOpenAI(base_url=BASE_URL, max_retries=0, timeout=10.0)
    async with asyncio.timeout(10):
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": f"Async at {{datetime.datetime.now().isoformat()}}"}}]
        )
    print("ANSWER", answer.choices[0].message.content)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(60), timeout=0.05)
    started = time.monotonic()
    await asyncio.sleep(0.01)
    assert time.monotonic() > started


@pytest.mark.llm_cache(mode="record")
def test_sdk_timeouts_fire_under_the_frozen_clock(llm_cache):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{{silent.getsockname()[1]}}/v1"
        with pytest.raises(openai.APITimeoutError):
            openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=0.3).models.list()

        async def ask_async():
            await openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=0.3).models.list()

        with pytest.raises(openai.APITimeoutError):
            asyncio.run(ask_async())
    deadline = time.monotonic() + 0.05
    for _ in range(10_000):  # bounded: a stopped monotonic clock fails here instead of hanging
        if time.monotonic() >= deadline:
            break
        time.sleep(0.001)
    else:
        pytest.fail("time.monotonic() stood still under the frozen clock")
'''

# (imports above) pytester's in-process runs drop the modules first imported inside them. Importing them here
# keeps them loaded: each run is faster, and httpcore2 stays the one whose exception classes httpx2 (loaded by
# a plugin) caches on first use, or a timeout in a second run escapes as httpcore2.ReadTimeout, unmapped.
INI = "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"



def _instants(pytester: pytest.Pytester) -> dict[str, str]:
    with sqlite3.connect(cassette_file(pytester)) as db:
        return dict(db.execute("SELECT test_id, instant FROM test_instants"))


@pytest.fixture
def app(llm_pytester: pytest.Pytester, server, env) -> pytest.Pytester:
    llm_pytester.makeini(INI)
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    return llm_pytester


def test_suite_records_then_replays_offline_identically_twice(app, server, env):
    recorded = app.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=5)
    assert len(server.requests) == 6, "1 timed prompt + 3 samples + 1 ignored-fields call + 1 async call"
    instants = _instants(app)
    assert instants["test_app.py::test_prompt_with_the_time"] == printed(recorded, "FROZEN")[0]
    assert "test_app.py::test_sdk_timeouts_fire_under_the_frozen_clock" not in instants, "nothing recorded, no instant kept"

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    first, second = app.runpytest("-s"), app.runpytest("-s")
    for replayed in (first, second):
        replayed.assert_outcomes(passed=5)
        replayed.stdout.fnmatch_lines(["llm_replay: 6 replayed, 0 recorded, 0 missed in 5 tests (mode replay, *)"])
        assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
        assert printed(replayed, "SAMPLES") == printed(recorded, "SAMPLES")
        assert printed(replayed, "FROZEN") == printed(recorded, "FROZEN")
    answers = printed(recorded, "ANSWER")
    assert len(answers) == 3
    assert answers[0].startswith(f"echo[0]: It is {instants['test_app.py::test_prompt_with_the_time'][:19]}")
    assert json.loads(printed(recorded, "SAMPLES")[0]) == [f"echo[0]: Pick a random number #{n}" for n in (2, 3, 4)]


def test_sequence_past_the_last_recording_misses_in_replay_and_records_in_record(app, server, env):
    app.runpytest("-k", "three_samples", "--llm-mode=record").assert_outcomes(passed=1)
    assert len(server.requests) == 3

    env.setenv("SAMPLES", "4")
    missed = app.runpytest("-k", "three_samples", "--llm-mode=replay")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines([
        "*llm_replay.CassetteMiss: no recording for this request*",
        "*prompt:    (user) Pick a random number",
        "*repeat:    this is identical request no. 4 in the test (repeats='sequence'); the cassette holds 3 answers for it",
        "*same request, but not at this occurrence: record the test again to add the missing answers",
        "*to record it: pytest --llm-mode=record test_app.py::test_three_samples*",
    ])
    assert len(server.requests) == 3, "replay never goes live"

    extended = app.runpytest("-s", "-k", "three_samples", "--llm-mode=record")
    extended.assert_outcomes(passed=1)
    extended.stdout.fnmatch_lines(["llm_replay: 3 replayed, 1 recorded, 0 missed*"])
    assert len(server.requests) == 4, "only the fourth sample went live"
    assert json.loads(printed(extended, "SAMPLES")[0])[-1].endswith("#4")

    server.stop()
    app.runpytest("-k", "three_samples", "--llm-mode=replay").assert_outcomes(passed=1)


def test_record_runs_reuse_the_stored_instant_and_refresh_takes_a_new_one(app, server):
    app.runpytest("-k", "prompt_with_the_time", "--llm-mode=record").assert_outcomes(passed=1)
    with sqlite3.connect(cassette_file(app)) as db:
        db.execute("UPDATE test_instants SET instant = '2001-02-03T04:05:06+00:00'")

    again = app.runpytest("-s", "-k", "prompt_with_the_time", "--llm-mode=record")
    again.assert_outcomes(passed=1)
    assert printed(again, "FROZEN") == ["2001-02-03T04:05:06+00:00"]
    assert printed(again, "ANSWER")[0].startswith("echo[0]: It is 2001-02-03T04:05:06 (Saturday, t=981173106). Plan my day.")

    refreshed = app.runpytest("-s", "-k", "prompt_with_the_time", "--llm-mode=refresh")
    refreshed.assert_outcomes(passed=1)
    new_instant = printed(refreshed, "FROZEN")[0]
    assert not new_instant.startswith("2001")
    assert _instants(app) == {"test_app.py::test_prompt_with_the_time": new_instant}


def test_opting_out_of_frozen_time_and_the_timestamp_hint(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_clock=f'''
import datetime
import openai
import pytest

@pytest.mark.llm_cache(freeze_time=False)
def test_real_clock(llm_cache):
    assert llm_cache.frozen_at is None
    openai.OpenAI(base_url="{server.base_url}").chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": f"It is {{datetime.datetime.now().isoformat()}}"}}])
''')
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    missed = llm_pytester.runpytest("--llm-mode=replay")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines([
        '*~ body.messages[[]0].content: "It is *" -> "It is *"',
        "*hint: the request differs from this recording only in values that look like timestamps, dates or UUIDs.",
        "*- the clock: llm_cache freezes it at the instant the test recorded at (freeze_time=True, ini llm_freeze_time);",
    ])
    assert "match_ignore=[" not in missed.stdout.str(), "a prompt with the time in it is not a field to ignore"

    write_ini(llm_pytester, "llm_freeze_time = false\n")
    llm_pytester.makepyfile(test_clock="def test_ini_opt_out(llm_cache):\n    assert llm_cache.frozen_at is None\n")
    llm_pytester.runpytest().assert_outcomes(passed=1)


def test_ignore_rules_from_ini_config_and_marker_add_up(llm_pytester):
    write_ini(llm_pytester, "llm_match_ignore =\n    user\n    metadata.*\n")
    llm_pytester.makeconftest('''
import pytest

@pytest.fixture
def llm_cache_config():
    return {"match_ignore": ["messages[*].name"], "repeats": "sequence"}
''')
    llm_pytester.makepyfile(test_rules='''
import pytest

@pytest.mark.llm_cache(match_ignore="tools[*].function.description")
def test_rules(llm_cache):
    assert llm_cache.rules.ignore == ("user", "metadata.*", "messages[*].name", "tools[*].function.description")
    assert llm_cache.repeats == "sequence"

@pytest.mark.llm_cache(match_ignore=["messages[x]"])
def test_bad_path(llm_cache):
    pass
''')
    result = llm_pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    assert "bad match_ignore path 'messages[x]' in @pytest.mark.llm_cache on test_rules.py::test_bad_path: expected dotted JSON body fields" in result.stdout.str() + result.stderr.str()


def test_hook_masks_generated_ids_and_changed_rules_keep_old_recordings(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makeconftest('''
import re
import pytest

def mask_session_ids(request):
    for message in request.body.get("messages", []):
        message["content"] = re.sub(r"session-[0-9a-f]+", "session-<id>", message["content"])
    return request

@pytest.fixture
def llm_cache_config():
    return {"before_fingerprint": mask_session_ids}
''')
    app = f'''
import uuid
import openai
import pytest

def create(**extra):
    return openai.OpenAI(base_url="{server.base_url}").chat.completions.create(model="gpt-4o-mini", **extra)

def test_generated_session_id(llm_cache):
    create(messages=[{{"role": "user", "content": f"Resume session-{{uuid.uuid4().hex}}: hello"}}])

RULES = {{}}

@pytest.mark.llm_cache(**RULES)
def test_rules_change(llm_cache):
    create(messages=[{{"role": "user", "content": "hi"}}], metadata={{"request_id": str(uuid.uuid4())}})
'''
    llm_pytester.makepyfile(test_ids=app)
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    assert len(server.requests) == 2

    # The ignore rule arrives after the recording: the old entry is found by re-keying its stored request.
    llm_pytester.makepyfile(test_ids=app.replace("RULES = {}", 'RULES = {"match_ignore": ["metadata.request_id"]}'))
    server.stop()
    env.delenv("OPENAI_API_KEY")
    replayed = llm_pytester.runpytest("--llm-mode=replay")
    replayed.assert_outcomes(passed=2)
    replayed.stdout.fnmatch_lines(["llm_replay: 2 replayed, 0 recorded, 0 missed*"])

    # Without the rule a random id is a real difference, and the miss says what to do about it.
    llm_pytester.makepyfile(test_ids=app)
    missed = llm_pytester.runpytest("--llm-mode=replay", "-k", "rules_change")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines([
        '*~ body.metadata.request_id: "*-*-*-*-*" -> "*-*-*-*-*"',
        "*hint: the request differs from this recording only in values that look like timestamps, dates or UUIDs.",
        "*with @pytest.mark.llm_cache(match_ignore=[[]\"metadata.request_id\"]) (or ini llm_match_ignore)",
    ])


def test_a_bad_ini_path_is_a_usage_error(llm_pytester):
    write_ini(llm_pytester, "llm_match_ignore = metadata..id\n")
    llm_pytester.makepyfile(test_x="def test_x(llm_cache): pass")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad match_ignore path 'metadata..id' in ini option llm_match_ignore: expected dotted JSON body fields*"])


CLOCK_APP = '''
import datetime
import os

import openai


def ask(content):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": content}}]).choices[0].message.content


def test_timeless(llm_cache):
    # The class names tell frozen from real without reading the clock (a read would set the flag).
    print("CLOCK", datetime.datetime.__name__, llm_cache.frozen_at and llm_cache.frozen_at.isoformat())
    when = os.environ.get("WHEN") or datetime.datetime.now().isoformat()
    print("ANSWER", ask(f"Summarise the news of {{when}}"))
    if llm_cache.frozen_at is None:
        assert type(datetime.datetime.now()) is datetime.datetime and datetime.datetime.__name__ == "datetime"


def test_dated(llm_cache):
    print("CLOCK", datetime.datetime.__name__, llm_cache.frozen_at and llm_cache.frozen_at.isoformat())
    print("ANSWER", ask(f"Plan my day: it is {{datetime.datetime.now().isoformat()}}"))
    assert datetime.datetime.now(datetime.timezone.utc) == llm_cache.frozen_at
'''


def _clock_reads(pytester: pytest.Pytester) -> dict[str, int | None]:
    with sqlite3.connect(cassette_file(pytester)) as db:
        return dict(db.execute("SELECT test_id, clock_read FROM test_instants"))


@pytest.fixture
def clock_app(llm_pytester: pytest.Pytester, server, env) -> pytest.Pytester:
    llm_pytester.makepyfile(test_clock=CLOCK_APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("WHEN", "2020-01-01T09:00:00")  # a date from the environment: the timeless test reads no clock
    return llm_pytester


def test_a_replay_freezes_only_tests_whose_recording_read_the_clock(clock_app, server, env):
    recorded = clock_app.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    instants = _instants(clock_app)
    assert printed(recorded, "CLOCK") == [f"FakeDatetime {instants['test_clock.py::test_timeless']}", f"FakeDatetime {instants['test_clock.py::test_dated']}"]
    assert _clock_reads(clock_app) == {"test_clock.py::test_timeless": 0, "test_clock.py::test_dated": 1}

    server.stop()
    env.delenv("OPENAI_API_KEY")
    for _ in range(2):
        replayed = clock_app.runpytest("-s", "--llm-mode=replay")
        replayed.assert_outcomes(passed=2)
        assert printed(replayed, "CLOCK") == ["datetime None", f"FakeDatetime {instants['test_clock.py::test_dated']}"]
        assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
    assert _instants(clock_app) == instants, "replays leave the stored instants alone"

    # The test now takes the date from the clock, which its recording never read: it misses, and says why.
    env.delenv("WHEN")
    missed = clock_app.runpytest("--llm-mode=replay", "-k", "timeless")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines([
        "*hint: the request differs from this recording only in values that look like timestamps, dates or UUIDs.",
        "*- the clock: this test's recording did not read it, so it replays on the real clock; re-record it with --llm-mode=refresh",
    ])


def test_record_runs_only_ever_turn_the_flag_to_read(clock_app, server, env):
    clock_app.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    env.delenv("WHEN")
    again = clock_app.runpytest("-s", "--llm-mode=record", "-k", "timeless")
    again.assert_outcomes(passed=1)
    assert printed(again, "CLOCK") == [f"FakeDatetime {_instants(clock_app)['test_clock.py::test_timeless']}"], "record runs reuse the instant"
    assert _clock_reads(clock_app)["test_clock.py::test_timeless"] == 1, "the new recording read the clock under the stored instant"

    env.setenv("WHEN", "2020-01-01T09:00:00")
    clock_app.runpytest("--llm-mode=record", "-k", "timeless").assert_outcomes(passed=1)
    assert _clock_reads(clock_app)["test_clock.py::test_timeless"] == 1, "an earlier recording under this instant read it"
    clock_app.runpytest("--llm-mode=refresh", "-k", "timeless").assert_outcomes(passed=1)
    assert _clock_reads(clock_app)["test_clock.py::test_timeless"] == 0, "a refresh re-records everything under a new instant"


def test_a_cassette_that_predates_the_flag_replays_frozen(clock_app, server, env):
    clock_app.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    instants = _instants(clock_app)
    with sqlite3.connect(cassette_file(clock_app)) as db:
        db.execute("ALTER TABLE test_instants DROP COLUMN clock_read")

    server.stop()
    env.delenv("OPENAI_API_KEY")
    replayed = clock_app.runpytest("-s", "--llm-mode=replay")  # opens the file read-only: the column stays missing
    replayed.assert_outcomes(passed=2)
    assert printed(replayed, "CLOCK") == [f"FakeDatetime {instants['test_clock.py::test_timeless']}", f"FakeDatetime {instants['test_clock.py::test_dated']}"]

    env.setenv("OPENAI_API_KEY", server.api_key)
    clock_app.runpytest("--llm-mode=record").assert_outcomes(passed=2)  # all replayed, nothing new: flags stay unknown
    assert _clock_reads(clock_app) == {"test_clock.py::test_timeless": None, "test_clock.py::test_dated": 1}
