"""Promises README.md and the docs pages make to a new user that no other test pinned: each test here fails if the
promise it names (in its docstring) stops holding; the other promises are pinned in the test file of their area.
The sessions run in this process (pytester's in-process runs) to keep the file fast."""

from __future__ import annotations

import datetime
import os
import re
import shlex
from importlib.metadata import requires
from pathlib import Path

# imported here once: pytester's in-process sessions drop what they imported first (a yaml re-imported after one keeps
# the first import's C loader, and fails to read what it wrote; openai would be imported again by every session)
import openai  # noqa: F401
import pytest
import yaml

import llm_replay
from conftest import cassette_file, printed, write_ini
from llm_replay.layers.placeholders import PLACEHOLDER_KEY

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    """The README's ```bash blocks, in order."""
    return re.findall(r"```bash\n(.*?)```", text, re.DOTALL)


def _extras_required(extras: set[str]) -> set[str]:
    """The distributions ``pip install -e ".[extras]"`` adds to llm_replay's own dependencies (lower case names)."""
    names = set()
    for requirement in requires("llm_replay") or ():
        marker = re.search(r'extra == "([^"]+)"', requirement)
        if marker is None or marker.group(1) in extras:
            names.add(re.split(r"[\s\[<>=;!~]", requirement, maxsplit=1)[0].lower())
    return names


def test_the_first_commands_install_gives_what_its_quoted_output_shows() -> None:
    """README: the first command prints a 'replays saved …, less than $0.0001' line. That price comes from genai-prices,
    an optional dependency: the extras the command installs must bring it, or a new user sees 'no price for …'."""
    first = _bash_blocks(README)[0]
    extras = re.search(r'pip install -q -e "\.\[([^\]]+)\]"', first)
    assert extras, f"the first command installs no extras: {first}"
    quoted = README[README.index("The first command above prints:"):].split("```", 2)[1]
    assert "replays saved" in quoted
    if "$" in quoted.split("replays saved", 1)[1].splitlines()[0]:
        assert "genai-prices" in _extras_required(set(extras.group(1).split(","))), (
            f"README's first command installs .[{extras.group(1)}], which has no genai-prices, yet quotes a price")
    assert "openai" in _extras_required(set(extras.group(1).split(","))), "the example app imports openai"


def test_the_test_suite_command_is_what_ci_runs() -> None:
    """README: 'Run the test suite (what .ci/run does)': the command quoted is .ci/run's, word for word."""
    quoted = _bash_blocks(README)[1].strip()
    ci_run = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert ci_run == [quoted], f"README says {quoted!r}; .ci/run runs {ci_run!r}"
    assert shlex.split(quoted)[-3:] == ["pytest", "-n", "2"]


def test_p_no_llm_replay_turns_the_plugin_off(llm_pytester: pytest.Pytester) -> None:
    """README (Install): the plugin registers itself (entry point llm_replay); `-p no:llm_replay` turns it off."""
    llm_pytester.makepyfile(test_x="def test_x(llm_cache):\n    pass\n")
    on = llm_pytester.runpytest("--llm-mode=replay")
    on.assert_outcomes(passed=1)
    off = llm_pytester.runpytest("-p", "no:llm_replay")
    off.assert_outcomes(errors=1)
    off.stdout.fnmatch_lines(["*fixture 'llm_cache' not found*"])
    assert "llm_replay:" not in off.stdout.str()
    assert llm_pytester.runpytest("-p", "no:llm_replay", "--llm-mode=replay").ret == pytest.ExitCode.USAGE_ERROR


def _documented_placeholder_variables() -> list[str]:
    """The key variables docs/providers.md says replay and adopt fill ('Keys while replaying')."""
    page = (ROOT / "docs" / "providers.md").read_text()
    bullet = page[page.index("**Keys while replaying.**"):].split("Give the client its region", 1)[0]
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", bullet)


KEY_PROBE = '''
import os

NAMES = {names!r}
AT_IMPORT = os.environ.get("OPENAI_API_KEY") == {placeholder!r}  # a module-level openai.OpenAI() is built here

def test_keys(llm_cache):
    print("KEYS", llm_cache.mode, sorted(name for name in NAMES if os.environ.get(name) == {placeholder!r}))
    print("FROZEN", llm_cache.frozen_at is not None)
    print("AT_IMPORT", AT_IMPORT)
'''


def test_every_documented_key_variable_gets_a_placeholder_in_replay_and_adopt_only(llm_pytester: pytest.Pytester) -> None:
    """README and docs/providers.md: in replay (and adopt) the usual SDK key variables, when unset, get a placeholder for
    the session (from collection on, so a client built at import constructs); in record and off they are left alone (a live call must not send a placeholder); and
    the session gives them back unset."""
    names = _documented_placeholder_variables()
    assert len(names) == 16 and {"OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"} <= set(names)
    unset = [name for name in names if name not in os.environ]
    llm_pytester.makepyfile(test_keys=KEY_PROBE.format(names=names, placeholder=PLACEHOLDER_KEY))
    # docs/deterministic-replay.md, by the way: record freezes the clock, off leaves it alone (frozen_at None)
    for mode, expected, frozen in (("replay", sorted(unset), "False"), ("adopt", sorted(unset), "False"), ("record", [], "True"), ("off", [], "False")):
        result = llm_pytester.runpytest("-s", f"--llm-mode={mode}")
        result.assert_outcomes(passed=1)
        assert printed(result, "KEYS") == [f"{mode} {expected}"] and printed(result, "FROZEN") == [frozen], mode
        assert printed(result, "AT_IMPORT") == [str(bool(expected))], "for the session: from collection on"
        assert not [name for name in unset if name in os.environ], "the session leaves the placeholders behind"


@pytest.mark.parametrize("value", ["No", "n", "F"])
def test_a_ci_variable_that_says_no_in_any_case_records(llm_pytester: pytest.Pytester, env: pytest.MonkeyPatch, value: str) -> None:
    """docs/configuration.md: CI set to a false word (false, 0, no, off, n, f, in any case) is not CI: the default
    mode is record (test_plugin_sessions.py::test_default_mode_follows_ci checks false, 0, OFF and empty)."""
    llm_pytester.makepyfile(test_mode="def test_mode(llm_cache):\n    print('MODE', llm_cache.mode)\n")
    env.setenv("CI", value)
    assert printed(llm_pytester.runpytest("-s"), "MODE") == ["record"]


def test_use_cassette_picks_its_mode_as_pytest_does_keeps_none_in_memory_and_leaves_the_clock(
        tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    """docs/configuration.md: use_cassette's mode defaults as in pytest (LLM_REPLAY_MODE, else replay when CI is set,
    else record); use_cassette(None) keeps recordings in memory; the clock is not frozen outside pytest."""
    env.chdir(tmp_path)
    with llm_replay.use_cassette(None) as cache:
        before = datetime.datetime.now(datetime.timezone.utc)
        assert cache.mode == "record" and cache.cassette.path is None and cache.frozen_at is None
    assert before <= datetime.datetime.now(datetime.timezone.utc) and list(tmp_path.iterdir()) == []
    env.setenv("CI", "woodpecker")
    with llm_replay.use_cassette("missing.sqlite3") as cache:
        assert cache.mode == "replay"
    assert list(tmp_path.iterdir()) == [], "a replay of a missing cassette creates nothing"
    env.setenv("LLM_REPLAY_MODE", "refresh")
    with llm_replay.use_cassette(None) as cache:
        assert cache.mode == "refresh"


SAMPLES = '''
import openai
import pytest

def ask():
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Name a cat"}}])

def test_samples(llm_cache):
    answers = [ask().choices[0].message.content for _ in range(2)]
    print("SAMPLES", llm_cache.recorded, llm_cache.replayed, len(set(answers)))

@pytest.mark.llm_cache(repeats="cache")
def test_cached(llm_cache):
    answers = [ask().choices[0].message.content for _ in range(2)]
    print("CACHED", llm_cache.recorded + llm_cache.replayed, len(set(answers)))
'''


def test_ini_repeats_sequence_is_the_default_the_marker_overrides(llm_pytester: pytest.Pytester, server, env) -> None:
    """docs/deterministic-replay.md: 'Also as ini llm_repeats = sequence …; the marker wins.' The ini makes each
    identical request its own recording; a marker's repeats="cache" gives both requests one answer."""
    write_ini(llm_pytester, "llm_repeats = sequence\n")
    llm_pytester.makepyfile(test_samples=SAMPLES.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    result = llm_pytester.runpytest("-s", "-p", "no:randomly", "--llm-mode=record")
    result.assert_outcomes(passed=2)
    assert printed(result, "SAMPLES") == ["2 0 2"], "two identical requests, two recordings, two answers"
    assert printed(result, "CACHED")[0].split()[1] == "1", "repeats='cache' on the marker: one answer for both"


def test_ini_scope_test_writes_nothing_and_a_fast_live_call_is_quiet_without_v(llm_pytester: pytest.Pytester, server, env) -> None:
    """docs/configuration.md: ini llm_scope = test gives each test a fresh in-memory cache: nothing is written, and in
    replay it always misses. docs/reporting.md: without -v only live calls of 5 s or more are shown."""
    write_ini(llm_pytester, "llm_scope = test\n")
    llm_pytester.makepyfile(test_samples=SAMPLES.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    assert printed(recorded, "CACHED") == ["2 1"], "within one test the in-memory cache answers the repeat"
    assert "llm_replay: live" not in recorded.stdout.str(), "a quick live call is not shown without -v"
    assert not cassette_file(llm_pytester).exists() and not (llm_pytester.path / "cassettes").exists()
    replayed = llm_pytester.runpytest("--llm-mode=replay", "-k", "cached", "--tb=line")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*CassetteMiss: no recording for this request*"])


def test_aiohttp_and_urllib3_record_and_replay_offline(server, tmp_path: Path) -> None:
    """docs/providers.md (HTTP clients): every call made through urllib3 and aiohttp (sync and async) is recorded and
    replayed. aiohttp's ``json=`` is how a hand-written async client posts a chat request."""
    import asyncio
    import json

    import aiohttp
    import urllib3

    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
    url = f"{server.base_url}/chat/completions"

    def chat(prompt: str) -> dict:
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}

    async def through_aiohttp() -> list:
        async with aiohttp.ClientSession() as session:
            answers = []
            for options in ({"json": chat("aiohttp json")}, {"data": json.dumps(chat("aiohttp data"))}):
                async with session.post(url, headers=headers, **options) as response:
                    answers.append((response.status, await response.json()))
            return answers

    def calls() -> list:
        sent = urllib3.PoolManager().request("POST", url, body=json.dumps(chat("urllib3")), headers=headers)
        return [(sent.status, json.loads(sent.data)), *asyncio.run(through_aiohttp())]

    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record") as recording:
        live = calls()
    assert recording.recorded == 3 and len(server.requests) == 3 and [status for status, _ in live] == [200] * 3
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert calls() == live
    assert replaying.replayed == 3


def test_before_fingerprint_runs_before_match_ignore_and_the_request_is_stored_as_sent(server, tmp_path: Path) -> None:
    """docs/deterministic-replay.md: the hook gets a copy it may edit in place; it runs before match_ignore; like
    match_ignore it decides matching only: what is stored is the request as sent."""
    import sqlite3

    seen = []

    def mask(request: llm_replay.CanonicalRequest) -> llm_replay.CanonicalRequest:
        seen.append(request.body["metadata"]["request_id"])
        message = request.body["messages"][0]
        message["content"] = re.sub(r"session-[0-9a-f]+", "session-<id>", message["content"])
        return request

    def ask(session: str, request_id: str) -> str:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Resume {session}"}], metadata={"request_id": request_id})
        return answer.choices[0].message.content

    cassette = tmp_path / "c.sqlite3"
    rules = {"match_ignore": ["metadata.request_id"], "before_fingerprint": mask}
    with llm_replay.use_cassette(cassette, mode="record", **rules):
        live = ask("session-abc123", "r-1")
    assert seen == ["r-1"], "the hook sees the field match_ignore leaves out: it runs first"
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay", **rules) as replaying:
        assert ask("session-fed987", "r-2") == live
    assert replaying.replayed == 1
    with sqlite3.connect(cassette) as db:
        (stored,), = db.execute("select request from interactions").fetchall()
    assert "Resume session-abc123" in stored and "r-1" in stored and "<id>" not in stored, stored


def test_a_command_line_cassette_is_relative_to_the_current_directory_an_ini_one_to_the_rootdir(
        llm_pytester: pytest.Pytester, server, env: pytest.MonkeyPatch) -> None:
    """docs/configuration.md: 'a command-line path is relative to the current directory, an ini path to the rootdir'
    (test_plugin_sessions.py runs from the rootdir, where the two are one folder)."""
    write_ini(llm_pytester, "llm_cassette = recordings/ini.sqlite3\n")
    llm_pytester.makepyfile(test_samples=SAMPLES.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    below = llm_pytester.mkdir("below")
    env.chdir(below)
    llm_pytester.runpytest("--llm-mode=record", "-k", "cached", "..").assert_outcomes(passed=1)
    assert (llm_pytester.path / "recordings" / "ini.sqlite3").is_file() and not (below / "recordings").exists()
    llm_pytester.runpytest("--llm-mode=record", "-k", "cached", "--llm-cassette=cli.sqlite3", "..").assert_outcomes(passed=1)
    assert (below / "cli.sqlite3").is_file() and not (llm_pytester.path / "cli.sqlite3").exists()


def test_a_thread_started_with_a_copied_context_records_into_its_starters_cassette(server, tmp_path: Path) -> None:
    """docs/configuration.md: a request goes to the cassette of its own context; a thread started with
    contextvars.copy_context().run shares its starter's, even while another thread has a cassette of its own (a plain
    thread then cannot tell whose it is, and is refused rather than recorded into either)."""
    import contextvars
    import threading

    import requests

    def ask(prompt: str) -> str:
        answer = requests.post(f"{server.base_url}/chat/completions", headers={"Authorization": f"Bearer {server.api_key}"},
                               json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
        return answer.json()["choices"][0]["message"]["content"]

    answers: dict[str, str] = {}

    def child(tag: str) -> None:
        try:
            answers[tag] = ask(tag)
        except llm_replay.CassetteMiss as miss:
            answers[tag] = f"refused: {miss}"

    other_on, done = threading.Event(), threading.Event()

    def other() -> None:
        with llm_replay.use_cassette(tmp_path / "other.sqlite3", mode="record"):
            other_on.set()
            done.wait(30)

    holder = threading.Thread(target=other)
    holder.start()
    other_on.wait(30)
    try:
        with llm_replay.use_cassette(tmp_path / "mine.sqlite3", mode="record") as mine:
            for target, tag in ((contextvars.copy_context().run, "copied"), (None, "plain")):
                thread = threading.Thread(target=target, args=(child, tag)) if target else threading.Thread(target=child, args=(tag,))
                thread.start()
                thread.join()
    finally:
        done.set()
        holder.join()
    assert mine.recorded == 1 and answers["copied"].startswith("echo[0]: copied")
    assert answers["plain"].startswith("refused: 2 cassettes are active in different threads"), answers["plain"]
    assert len(server.requests) == 1


SCOPE_TEST_CLOCK = '''
import datetime, time
import openai
import pytest

@pytest.mark.llm_cache(scope="test")
def test_twice(llm_cache):
    started = datetime.datetime.now(datetime.timezone.utc)
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": f"It is {{datetime.datetime.now().isoformat()}}"}}])
        time.sleep(0.2)  # the prompt carries microseconds: a running clock would change it
    print("CLOCK", llm_cache.recorded, llm_cache.replayed, llm_cache.frozen_at == started)
'''


def test_scope_test_freezes_at_the_tests_start_and_time_stands_still_within_it(llm_pytester: pytest.Pytester, server, env) -> None:
    """docs/deterministic-replay.md: with scope="test" the clock freezes at the test's real start, and time stands
    still within the test: asking twice, a moment apart, with the time in the prompt gives one recording."""
    llm_pytester.makepyfile(test_clock=SCOPE_TEST_CLOCK.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    result = llm_pytester.runpytest("-s", "--llm-mode=record")
    result.assert_outcomes(passed=1)
    assert printed(result, "CLOCK") == ["1 1 True"]
    asked = server.requests[0]["json"]["messages"][0]["content"]
    assert before <= datetime.datetime.fromisoformat(asked[len("It is "):]).replace(tzinfo=datetime.timezone.utc) <= datetime.datetime.now(datetime.timezone.utc)


REDACTED_ANSWERS = {
    "https://api.openai.com/v1/chat/completions": {"object": "chat.completion", "model": "gpt-4o-mini", "choices": []},
    "https://api.openai.com/v1/completions": {"object": "text_completion", "model": "gpt-3.5-turbo-instruct", "choices": []},
    "https://api.openai.com/v1/responses": {"object": "response", "model": "gpt-4.1-mini", "output": []},
    "https://api.openai.com/v1/embeddings": {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]},
    "https://api.anthropic.com/v1/messages": {"type": "message", "model": "claude-sonnet-4-5", "content": []},
}


def test_an_imported_recording_whose_uri_was_redacted_gets_its_endpoint_from_its_answer(tmp_path: Path, capsys) -> None:
    """docs/providers.md: imported cassettes whose URIs were redacted (LangChain's) get their endpoint from the body:
    chat, completions, Responses and embeddings on https://api.openai.com, Anthropic messages on
    https://api.anthropic.com (tests/test_yaml_import.py checks a streamed chat with --redacted-host only)."""
    import json

    from llm_replay.cli import main
    from llm_replay.stores.sqlite import SQLiteCache

    interactions = [
        {"request": {"method": "POST", "uri": "**REDACTED**", "body": json.dumps({"n": n}), "headers": {}},
         "response": {"status": {"code": 200, "message": "OK"}, "headers": {"content-type": ["application/json"]},
                      "body": {"string": json.dumps(answer)}}}
        for n, answer in enumerate(REDACTED_ANSWERS.values())
    ]
    source = tmp_path / "redacted.yaml"
    source.write_text(yaml.safe_dump({"version": 1, "interactions": interactions}))
    cassette = tmp_path / "c.sqlite3"
    assert main(["import", "--cassette", str(cassette), str(source)]) == 0, capsys.readouterr()
    store = SQLiteCache(cassette, readonly=True)
    try:
        urls = {recording.request.body["n"]: recording.request.url for recording in store.interactions()}
    finally:
        store.close()
    assert [urls[n] for n in range(len(REDACTED_ANSWERS))] == list(REDACTED_ANSWERS)


def test_the_html_report_forbids_loading_anything(llm_pytester: pytest.Pytester, server, env) -> None:
    """docs/reporting.md: one self-contained page, no script, no network: a Content-Security-Policy forbids loading
    anything (tests/test_html_report.py renders the page; it does not read the policy)."""
    llm_pytester.makepyfile(test_samples=SAMPLES.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    result = llm_pytester.runpytest("--llm-mode=record", "-k", "cached", "--llm-report=out/report.html")
    result.assert_outcomes(passed=1)
    page = (llm_pytester.path / "out" / "report.html").read_text()
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert policy and policy.group(1).split(";")[0].strip() == "default-src 'none'", page[:500]
    assert "script-src" not in policy.group(1) and "<script" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing is loaded from elsewhere"
    assert "test_cached" in page and "Name a cat" in page


def test_an_aiohttp_body_llm_replay_cannot_key_is_refused_by_name_before_anything_is_sent(server, tmp_path: Path) -> None:
    """aiohttp's FormData reaches vcrpy as the object itself, which has no bytes to key a recording by: it was a bare
    'TypeError: cannot convert FormData object to bytes' from inside the fingerprint. It is a CassetteError naming the
    body and what to send instead; nothing is sent or recorded."""
    import asyncio

    import aiohttp

    async def upload() -> None:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("file", b"RIFF0000WAVEfmt ", filename="hello.wav", content_type="audio/wav")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.base_url}/audio/transcriptions", data=form, headers={"Authorization": f"Bearer {server.api_key}"}):
                pass

    with llm_replay.use_cassette(tmp_path / "c.sqlite3", mode="record") as recording:
        with pytest.raises(llm_replay.CassetteError, match=r"aiohttp.*FormData.*cannot be recorded.*bytes"):
            asyncio.run(upload())
    assert recording.recorded == 0 and server.requests == []
