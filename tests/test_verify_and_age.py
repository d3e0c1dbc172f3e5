"""Recordings grow old: verify against a live server that now answers differently, expiry by age, the
before_record hook, hosts that always go live, unplayed recordings, and cassettes in several threads at once.

Every check runs whole pytest sessions against the loopback fake (whose answers carry its request number
``#n``, so a second call to the same prompt differs in text while a tool call differs only in its id).
"""

from __future__ import annotations

import json
import sqlite3
import ssl
from datetime import datetime, timedelta, timezone

import pytest
import trustme
import vcr.serializers.yamlserializer  # noqa: F401  imported here, once: pytester's inner sessions drop the modules
from conftest import cassette_file, printed, write_ini  # they import first, which would leave YAML loading half-stale
from fake_openai import FakeOpenAI
from test_html_report import PageText  # the report's text as a reader sees it (that test renders it in Chromium)
from test_yaml_import import ANSWER, REQUEST, stored, vcr_yaml

from llm_replay.cli import main

ASK = '''
import openai

BASE_URL = "{base_url}"


def client():
    return openai.OpenAI(base_url=BASE_URL, max_retries=0)


def ask(prompt, **extra):
    return client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}], **extra)
'''

VERIFY_TESTS = ASK + '''
TOOL = {{"type": "function", "function": {{"name": "lookup", "parameters": {{"type": "object", "properties": {{"q": {{"type": "string"}}}}}}}}}}


def test_text(llm_cache):
    print("ANSWER", ask("What is the capital of France?").choices[0].message.content)


def test_tool(llm_cache):
    call = ask("Find the weather", tools=[TOOL]).choices[0].message.tool_calls[0]
    print("ANSWER", call.function.name, call.function.arguments)
'''


# Every test here, inner sessions included, runs in a new user's shell (conftest's env).
pytestmark = pytest.mark.usefixtures("env")


def _rows(pytester: pytest.Pytester) -> list[tuple]:
    with sqlite3.connect(cassette_file(pytester)) as db:
        return db.execute("SELECT fingerprint, occurrence, body, recorded_at, tests FROM interactions ORDER BY fingerprint").fetchall()


def test_verify_replays_the_recording_compares_live_and_writes_nothing(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=VERIFY_TESTS.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    before = _rows(llm_pytester)

    # The nightly job: the server now answers the text prompt differently (#3, not #1); the tool call only by its id.
    env.setenv("LLM_REPLAY_MODE", "verify")
    verified = llm_pytester.runpytest("-s", "--llm-report=report.html")
    verified.assert_outcomes(passed=2)
    assert verified.ret == 0
    assert len(server.requests) == 4, "each recorded request was also sent live"
    assert printed(verified, "ANSWER") == printed(recorded, "ANSWER"), "the tests saw the recorded answers, not the live ones"
    verified.stdout.fnmatch_lines([
        "llm_replay: 2 replayed, 0 recorded, 0 missed in 2 tests (mode verify, *)",
        "llm_replay drift: 2 answers compared with the recordings: 1 text, 1 identical",
        "  text: test_app.py::test_text",
    ])
    assert _rows(llm_pytester) == before, "verify wrote to the cassette"
    page = PageText()
    page.feed((llm_pytester.path / "report.html").read_text())
    shown = "\n".join(page.text)
    text_drift = shown[shown.index("verify drift: text"):]
    assert "recorded" in text_drift and "live now (not recorded)" in text_drift and "#1" in text_drift and "#3" in text_drift, "the report shows both answers"
    assert "verify drift: identical" in shown and "the new answer says what the recorded one said" in shown

    # --llm-fail-on-drift fails the session for a listed class that occurred, and only then; under
    # pytest-xdist the controller adds up what each worker compared.
    env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    failing = llm_pytester.runpytest_subprocess("-p", "xdist", "-p", "llm_replay.pytest_plugin.plugin", "-n", "2", "--llm-fail-on-drift=text,status")
    failing.assert_outcomes(passed=2)
    assert failing.ret == 1
    failing.stdout.fnmatch_lines([
        "llm_replay drift: 2 answers compared with the recordings: 1 text, 1 identical",
        "  text: test_app.py::test_text",
        "llm_replay: the session fails: --llm-fail-on-drift=status,text and answers drifted (1 text) in test_app.py::test_text",
    ])
    env.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    quiet = llm_pytester.runpytest("--llm-mode=verify", "--llm-fail-on-drift=tool_calls")
    assert quiet.ret == 0 and "the session fails" not in quiet.stdout.str()

    # A request without recording is a miss, as in replay: nothing is sent.
    sent = len(server.requests)
    llm_pytester.makepyfile(test_new='from test_app import ask\n\ndef test_new(llm_cache):\n    ask("never recorded")\n')
    missed = llm_pytester.runpytest("--llm-mode=verify", "test_new.py")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(["*llm_replay.CassetteMiss: no recording for this request*"])
    assert len(server.requests) == sent and _rows(llm_pytester) == before


def test_verify_sends_https_live(llm_pytester, env, tmp_path):
    """Real APIs are HTTPS: the live call is made while vcrpy's patch replaces http.client's HTTPS class."""
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(tls)
    env.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # trusted by httpx (the SDK) and by verify's own call
    with FakeOpenAI(tls=tls) as https_server:
        llm_pytester.makepyfile(test_app=VERIFY_TESTS.format(base_url=https_server.base_url))
        env.setenv("OPENAI_API_KEY", https_server.api_key)
        llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
        verified = llm_pytester.runpytest("--llm-mode=verify", "-W", "error::UserWarning")
        verified.assert_outcomes(passed=2)
        verified.stdout.fnmatch_lines(["llm_replay drift: 2 answers compared with the recordings: 1 text, 1 identical"])
        assert len(https_server.requests) == 4, "each recorded request was also sent live, over TLS"


def test_bad_drift_class_is_a_usage_error(llm_pytester):
    llm_pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = llm_pytester.runpytest("--llm-fail-on-drift=txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-fail-on-drift: unknown drift class 'txt'; use any of: status, finish_reason, tool_calls, shape, text*"])


def _age_recording(pytester: pytest.Pytester, test: str, days: int) -> None:
    """Make the recordings of ``test`` as old as ``days`` (as if recorded then)."""
    then = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")
    with sqlite3.connect(cassette_file(pytester)) as db:
        assert db.execute("UPDATE interactions SET recorded_at = ? WHERE tests LIKE ?", (then, f"%{test}%")).rowcount == 1


AGE_TESTS = ASK + '''

def test_old(llm_cache):
    print("ANSWER", ask("an old question").choices[0].message.content)


def test_new(llm_cache):
    print("ANSWER", ask("a new question").choices[0].message.content)
'''


def test_expired_recordings_warn_fail_or_are_rerecorded(llm_pytester, server, env, capsys):
    llm_pytester.makepyfile(test_app=AGE_TESTS.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    _age_recording(llm_pytester, "test_old", days=40)

    # ls --older-than lists the old recording only.
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["ls", "--older-than", "30d"]) == 0
    listed = capsys.readouterr().out
    assert "an old question" in listed and "a new question" not in listed and listed.rstrip().endswith("1 recording")
    assert main(["ls", "--older-than", "thirty days"]) == 2
    assert "--older-than: 'thirty days' is not an age" in capsys.readouterr().err

    # warn (the default): replayed, with a warning naming the age.
    write_ini(llm_pytester, "llm_max_age = 30d")
    warned = llm_pytester.runpytest("--llm-mode=replay")
    warned.assert_outcomes(passed=2, warnings=1)
    warned.stdout.fnmatch_lines(["*RecordingExpired: llm_replay replayed an expired recording: POST */v1/chat/completions: 40d old (recorded *), older than max_age 30d*"])

    # fail, set per directory by llm_cache_config: the test fails with the age and the command that re-records it.
    llm_pytester.makeconftest('import pytest\n\n@pytest.fixture\ndef llm_cache_config():\n    return {"on_expired": "fail"}\n')
    failed = llm_pytester.runpytest("--llm-mode=replay")
    failed.assert_outcomes(passed=1, failed=1)
    failed.stdout.fnmatch_lines([
        "*the recording of POST */v1/chat/completions is 40d old (recorded *), older than max_age 30d (on_expired = fail).",
        "*to re-record it: pytest --llm-mode=refresh test_app.py::test_old  (with the API key set)",
    ])

    # refresh where the mode may not call the network (replay) fails the same way, saying why.
    write_ini(llm_pytester, "llm_max_age = 30d\nllm_on_expired = refresh")
    llm_pytester.makeconftest("")
    refused = llm_pytester.runpytest("--llm-mode=replay")
    refused.assert_outcomes(passed=1, failed=1)
    refused.stdout.fnmatch_lines(["*(on_expired = refresh, and mode 'replay' does not call the network to re-record it).*"])

    # refresh in record mode re-records the expired one alone; the fresh one replays and keeps its time.
    new_before = [row for row in _rows(llm_pytester) if "test_new" in row[4]]
    sent = len(server.requests)
    refreshed = llm_pytester.runpytest("--llm-mode=record", "-s")
    refreshed.assert_outcomes(passed=2)
    refreshed.stdout.fnmatch_lines(["llm_replay: 1 replayed, 1 recorded, 0 missed in 2 tests*"])
    assert len(server.requests) == sent + 1
    rows = _rows(llm_pytester)
    assert len(rows) == 2 and [row for row in rows if "test_new" in row[4]] == new_before
    old = next(row for row in rows if "test_old" in row[4])
    assert datetime.now(timezone.utc) - datetime.fromisoformat(old[3]) < timedelta(days=1)

    # a marker on one test overrides the ini: this one may be a year old.
    llm_pytester.makepyfile(test_app=AGE_TESTS.format(base_url=server.base_url).replace(
        "def test_old(", "import pytest\n\n@pytest.mark.llm_cache(max_age='400d', on_expired='fail')\ndef test_old("))
    _age_recording(llm_pytester, "test_old", days=40)
    llm_pytester.runpytest("--llm-mode=replay").assert_outcomes(passed=2)


def test_bad_age_or_expiry_action_is_a_usage_error_naming_the_option(llm_pytester):
    write_ini(llm_pytester, "llm_max_age = a month")
    llm_pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*max_age in ini option llm_max_age: 'a month' is not an age; write a number and a unit, e.g. 30d, 12h, 90s*"])
    write_ini(llm_pytester, "llm_on_expired = nag")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*on_expired in ini option llm_on_expired must be one of warn, fail, refresh, not 'nag'*"])


HOOK_TESTS = ASK + '''
import dataclasses
import json
import os

import pytest


def mask(interaction):
    """Mask the volatile id, drop what mentions a secret project, and (wrongly) copy the key into the body."""
    if "project falcon" in interaction.request_json:
        return None
    answer = json.loads(interaction.response.body)
    answer["id"] = "chatcmpl-masked"
    answer["leak"] = os.environ["OPENAI_API_KEY"]
    return dataclasses.replace(interaction, response=dataclasses.replace(interaction.response, body=json.dumps(answer).encode()))


@pytest.fixture
def llm_cache_config():
    return {{"before_record": mask}}


def test_masked(llm_cache):
    print("ID", ask("hello").id)


def test_dropped(llm_cache):
    print("ID", ask("about project falcon").id)
'''


def test_before_record_masks_a_field_drops_an_interaction_and_scrubbing_still_runs_last(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=HOOK_TESTS.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert printed(recorded, "ID") == ["chatcmpl-fake-1", "chatcmpl-fake-2"], "the tests saw the live answers"
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 1 recorded, 0 missed in 2 tests*"])
    ((_, _, body, _, tests),) = _rows(llm_pytester)
    answer = json.loads(body)
    assert "test_masked" in tests and answer["id"] == "chatcmpl-masked"
    assert answer["leak"] == "<scrubbed:OPENAI_API_KEY>" and server.api_key.encode() not in cassette_file(llm_pytester).read_bytes()

    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s", "-k", "masked")
    replayed.assert_outcomes(passed=1, deselected=1)
    assert printed(replayed, "ID") == ["chatcmpl-masked"]


SHAPING = (
    "import dataclasses, json\n\n"
    "def mask_id(interaction):\n"
    "    answer = json.loads(interaction.response.body)\n"
    "    answer['id'] = 'masked'\n"
    "    return dataclasses.replace(interaction, response=dataclasses.replace(interaction.response, body=json.dumps(answer).encode()))\n"
)


def test_import_runs_the_ini_before_record_hook(tmp_path, env, capsys):
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_before_record = shaping:mask_id\n")
    (tmp_path / "shaping.py").write_text(SHAPING)
    source = vcr_yaml(tmp_path / "capital.yaml", json.dumps(REQUEST), json.dumps(ANSWER).encode(), {"Content-Type": ["application/json"]})
    env.chdir(tmp_path)
    assert main(["import", str(source)]) == 0
    (recording,) = stored(tmp_path / "cassettes" / "llm_cache.sqlite3")
    assert recording.response.json() == {**ANSWER, "id": "masked"}

    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_before_record = shaping:no_such_function\n")
    capsys.readouterr()
    assert main(["import", str(source)]) == 2
    assert "ini option llm_before_record: cannot load 'shaping:no_such_function'" in capsys.readouterr().err



def test_copy_runs_the_ini_before_record_hook_on_what_it_writes_and_leaves_the_source_alone(tmp_path, env, capsys):
    env.chdir(tmp_path)
    source_yaml = vcr_yaml(tmp_path / "capital.yaml", json.dumps(REQUEST), json.dumps(ANSWER).encode(), {"Content-Type": ["application/json"]})
    assert main(["import", str(source_yaml), "--cassette", "source.sqlite3"]) == 0  # no hook yet: the answer as recorded
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_before_record = shaping:mask_id\n")
    (tmp_path / "shaping.py").write_text(SHAPING)

    assert main(["copy", "source.sqlite3", "copied.sqlite3"]) == 0
    (copied,) = stored(tmp_path / "copied.sqlite3")
    assert copied.response.json() == {**ANSWER, "id": "masked"}
    (original,) = stored(tmp_path / "source.sqlite3")
    assert original.response.json() == ANSWER

IGNORED_TESTS = ASK + '''
import httpx2

SERVICE = "{service_url}"


def test_with_a_local_service(llm_cache):
    answer = ask("summarise the search results").choices[0].message.content
    hits = httpx2.post(SERVICE + "/embeddings", json={{"model": "local", "input": "search"}}, headers={{"Authorization": "Bearer sk-test-fake"}}).json()
    print("SERVICE", hits["model"], llm_cache.replayed + llm_cache.recorded)
'''


def test_ignored_host_is_called_live_in_replay_and_never_recorded(llm_pytester, server, env):
    with FakeOpenAI() as service:  # a local service the tests run (a vector store, say)
        port = service.base_url.split(":")[-1].split("/")[0]
        llm_pytester.makepyfile(test_app=IGNORED_TESTS.format(base_url=server.base_url, service_url=service.base_url))
        write_ini(llm_pytester, f"llm_ignore_hosts = 127.0.0.1:{port}")
        env.setenv("OPENAI_API_KEY", server.api_key)
        recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
        recorded.assert_outcomes(passed=1)
        assert printed(recorded, "SERVICE") == ["local 1"], "only the LLM call went through the cassette"
        ((_, _, body, _, _),) = _rows(llm_pytester)
        assert "summarise the search results" in (body if isinstance(body, str) else body.decode())

        server.stop()
        env.delenv("OPENAI_API_KEY")
        env.setenv("CI", "true")
        replayed = llm_pytester.runpytest("-s")
        replayed.assert_outcomes(passed=1)
        assert printed(replayed, "SERVICE") == ["local 1"] and len(service.requests) == 2, "the service was called live in replay"


def test_ignored_hosts_pass_the_network_guard_in_replay(tmp_path):
    import socket

    import llm_replay

    with llm_replay.use_cassette(None, mode="replay", ignore_hosts=["vectors.internal:6333"]):
        with pytest.raises(llm_replay.NetworkBlocked, match=r"allowed now: vectors\.internal\)"):
            socket.getaddrinfo("api.example.com", 443)


UNPLAYED_TESTS = ASK + '''

def test_both(llm_cache):
    ask("first")
    {second}


def test_single(llm_cache):
    ask("only")
'''


def test_fail_unplayed_fails_the_test_that_left_a_recording_unused(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=UNPLAYED_TESTS.format(base_url=server.base_url, second='ask("second")'))
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)

    llm_pytester.makepyfile(test_app=UNPLAYED_TESTS.format(base_url=server.base_url, second="pass"))
    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest().assert_outcomes(passed=2)  # off by default
    write_ini(llm_pytester, "llm_fail_unplayed = true")
    result = llm_pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*this test owns 1 recording(s) in * that it did not replay (llm_fail_unplayed = true):",
        "*POST */v1/chat/completions, recorded *",
        "FAILED test_app.py::test_both*",
    ])
    assert len(_rows(llm_pytester)) == 3, "failing a test deletes nothing"


THREAD_TESTS = ASK + '''
import asyncio
import threading

import openai
from llm_replay import use_cassette


def test_two_threads_each_with_its_own_cassette(llm_cache):
    both_active = threading.Barrier(2, timeout=10)
    answers = {{}}

    def work(name):
        with use_cassette(f"{{name}}.sqlite3") as recorder:
            both_active.wait()  # the two cassettes are active at the same time
            answers[name] = (ask(f"question from {{name}}").choices[0].message.content, recorder.replayed, recorder.recorded)
            both_active.wait()

    threads = [threading.Thread(target=work, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    print("THREADS", sorted(answers.items()))
    assert llm_cache.replayed + llm_cache.recorded == 0


def test_two_tasks_each_with_its_own_cassette(llm_cache):
    async def work(name, both_active):
        with use_cassette(f"task-{{name}}.sqlite3") as recorder:
            both_active.append(name)
            while len(both_active) < 2:
                await asyncio.sleep(0.01)
            answer = await openai.AsyncOpenAI(base_url=BASE_URL, max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{{"role": "user", "content": f"task {{name}}"}}])
            return name, answer.choices[0].message.content, recorder.replayed, recorder.recorded

    async def main():
        both_active = []
        return await asyncio.gather(work("a", both_active), work("b", both_active))

    print("TASKS", sorted(asyncio.run(main())))
'''


def test_threads_and_tasks_record_and_replay_their_own_cassettes(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=THREAD_TESTS.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    threads, tasks = printed(recorded, "THREADS"), printed(recorded, "TASKS")
    assert "question from left" in threads[0] and ", 0, 1)" in threads[0] and ", 1, 0)" not in threads[0]
    for name in ("left", "right", "task-a", "task-b"):
        with sqlite3.connect(llm_pytester.path / f"{name}.sqlite3") as db:
            (request,) = [row[0] for row in db.execute("SELECT request FROM interactions")]
        assert name.removeprefix("task-") in request, f"{name}.sqlite3 holds another thread's or task's recording"

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=2)
    expected_threads = threads[0].replace(", 0, 1)", ", 1, 0)")
    assert printed(replayed, "THREADS") == [expected_threads]
    assert printed(replayed, "TASKS") == [tasks[0].replace(", 0, 1)", ", 1, 0)")]


def test_ages_and_host_patterns_read_as_documented():
    from llm_replay.engine.age import age_text, parse_age
    from llm_replay.engine.host_patterns import HostPatterns

    assert [parse_age(text, "t") for text in ("30d", "12h", "90s", "15m", "2w", " 1.5h ")] == [2592000, 43200, 90, 900, 1209600, 5400]
    assert [age_text(seconds) for seconds in (2592000 + 5, 43200, 90, 59)] == ["30d", "12h", "1m", "59s"]
    for bad in ("0d", "30", "30 days", "-1h"):
        with pytest.raises(ValueError, match="t: "):
            parse_age(bad, "t")
    patterns = HostPatterns(["localhost:6333", "*.internal", "[::1]:8080", "10.0.0.*"])
    assert patterns.matches("localhost", 6333) and not patterns.matches("localhost", 6334)
    assert patterns.matches("vectors.internal", 443) and not patterns.matches("internal.example.com", 443)
    assert patterns.matches("[::1]", 8080) and patterns.matches("10.0.0.7", 80) and not patterns.matches("10.0.1.7", 80)
    assert patterns.hosts() == ("localhost", "*.internal", "::1", "10.0.0.*")


def test_use_cassette_takes_before_record_and_a_failing_hook_fails_the_call(server):
    import openai

    import llm_replay

    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    ask = lambda: client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # noqa: E731
    with llm_replay.use_cassette(None, mode="record", before_record=lambda interaction: None) as recorder:
        assert ask().id == "chatcmpl-fake-1" and len(recorder.cassette) == 0 and recorder.recorded == 0

    def broken(interaction):
        return "not an interaction"

    with pytest.raises(llm_replay.CassetteMiss, match="before_record hook .*broken returned str"):
        with llm_replay.use_cassette(None, mode="record", before_record=broken):
            ask()
