"""``--llm-report``: the page a person opens after a run, checked as they see it, rendered by headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import write_ini
from fake_openai import FakeOpenAI
from redis_server import in_ci

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not in_ci(), reason="chromium is not installed (CI installs it: .ci/run)")

APP = '''
import openai
import pytest

def client():
    return openai.OpenAI(base_url="{base_url}", max_retries=0)

def ask(prompt):
    return client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "system", "content": "Be brief."}}, {{"role": "user", "content": prompt}}])

@pytest.mark.llm_cache(mode="refresh")
def test_poem(llm_cache):
    ask("Write a line about <script>alert('pwned')</script> & <b>bold</b> claims")

def test_tool(llm_cache):
    tools = [{{"type": "function", "function": {{"name": "lookup_weather", "parameters": {{"type": "object", "properties": {{}}}}}}}}]
    client().chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Weather in Oslo?"}}], tools=tools)

def test_embed(llm_cache):
    client().embeddings.create(model="text-embedding-3-small", input=["red apple", "green pear"])  # base64, as the SDK asks

@pytest.mark.llm_cache(mode="replay")
def test_unrecorded(llm_cache):
    ask("What is the capital of Spain?")
'''


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, offline and with a throwaway profile."""
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
    ]
    return subprocess.run([CHROMIUM or "chromium", *flags, *args], capture_output=True, text=True, timeout=120, check=True)


class PageText(HTMLParser):
    """The text a reader sees, and the element names the browser built."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: set[str] = set()
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self._hidden += tag in ("style", "title", "head")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "title", "head")

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.text.append(" ".join(data.split()))


@needs_chromium
def test_report_shows_each_tests_calls_misses_and_drift_as_rendered_by_a_browser(llm_pytester, server, env, tmp_path):
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.runpytest().assert_outcomes(passed=3, failed=1)  # records the poem, the tool call and the embeddings
    report = llm_pytester.path / "out" / "llm-report.html"
    result = llm_pytester.runpytest("--llm-report=out/llm-report.html", "-n", "2")  # the workers' tests gathered into one page
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"llm_replay: report written to {report}"])
    page = report.read_text()
    assert "http://" not in page.replace(server.base_url.split("/v1")[0], "") and "https://" not in page, "nothing to fetch"

    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile").stdout
    seen = PageText()
    seen.feed(dom)
    text = "\n".join(seen.text)
    assert "script" not in seen.tags and "b" not in seen.tags, "model input and output are shown as text, never run as markup"
    assert "Write a line about <script>alert('pwned')</script> & <b>bold</b> claims" in text
    for expected in (
        "llm_replay report",
        "llm_replay: 2 replayed, 1 recorded, 1 missed in 4 tests (mode record, cassette cassettes/llm_cache.sqlite3)",
        "llm_replay drift: 1 answer compared with the recordings: 1 text",  # counted in a worker, added up in the controller
        "test_app.py::test_poem", "passed", "recorded", "refresh drift: text", "recorded before", "recorded now",
        "test_app.py::test_tool", "replayed", "tool call lookup_weather({\"q\": \"Weather in Oslo?\"})", "finish reason tool_calls",
        "test_app.py::test_unrecorded", "failed", "missed", "no recording for this request (mode 'replay': the network is not used)",
        "Be brief.", "system", "user",
        "test_app.py::test_embed", "red apple", "green pear", "2 embeddings of 8 dimensions",  # the inputs, not the vectors
    ):
        assert expected in text, expected
    poem = text[text.index("test_app.py::test_poem"):text.index("test_app.py::test_tool")]
    assert "POST 127.0.0.1" in poem and "model gpt-4o-mini" in poem and " in / " in poem and " ms" in poem
    old, new = poem.split("recorded before")[1].split("recorded now")
    assert old.count("echo[0]: Write a line about") == 1 and new.count("echo[0]: Write a line about") == 1 and old.split("#")[1][:3] != new.split("#")[1][:3]

    screenshot = tmp_path / "llm-report.png"  # kept with the test's files, for a person to look at
    chromium(f"--screenshot={screenshot}", "--window-size=1200,1400", "--hide-scrollbars", report.as_uri(), profile=tmp_path / "profile")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


LEAKY_APP = '''
import os

import openai
import pytest

TOKEN = "{token}"


def ask(prompt):
    return openai.OpenAI(base_url="{base_url}", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]
    )


@pytest.mark.parametrize("token", [TOKEN])  # the test's id holds the secret too
def test_echo(llm_cache, token):
    ask("my config uses " + os.environ["OPENAI_API_KEY"] + " and " + token)


@pytest.mark.llm_cache(mode="refresh")
@pytest.mark.parametrize("token", [TOKEN])
def test_refreshed(llm_cache, token):
    ask("again: " + os.environ["OPENAI_API_KEY"] + " and " + token)


@pytest.mark.llm_cache(mode="replay")
@pytest.mark.parametrize("token", [TOKEN])
def test_unrecorded(llm_cache, token):
    ask("never recorded: " + os.environ["OPENAI_API_KEY"] + " and " + token)


def test_key_set_in_the_test(llm_cache, monkeypatch):  # unset by monkeypatch before llm_cache is torn down
    monkeypatch.setenv("SCRATCH_TOKEN", "{scratch}")
    ask("scratch " + os.environ["SCRATCH_TOKEN"])
'''


def test_report_shows_no_secret_the_cassette_would_not_hold(llm_pytester, env):
    """An env key and an ini pattern's match, echoed by the model, named in a test id, a miss and a refresh's drift,
    and a key a test set and unset: none is in the page's bytes, while the rest of each answer is."""
    key = "-".join(("sk", "proj", "FAKE0test0key0" + "T3BlbkFJ" + "0for0the0report0only"))  # built here: no key-shaped text in the file
    token = "corp-tok-5f3a9c1e7b2d4a60"
    scratch = "scratch-9d81c7e2f0a44b3c"
    write_ini(llm_pytester, "llm_secret_patterns = corp-tok-[0-9a-f]{16}")
    env.setenv("OPENAI_API_KEY", key)
    with FakeOpenAI(api_key=key) as server:
        llm_pytester.makepyfile(test_app=LEAKY_APP.format(base_url=server.base_url, token=token, scratch=scratch))
        llm_pytester.runpytest("--llm-report=out/record.html").assert_outcomes(passed=3, failed=1)  # records; one miss
        result = llm_pytester.runpytest("--llm-report=out/refresh.html", "-n", "2")  # replays, refreshes (drift), misses
        result.assert_outcomes(passed=3, failed=1)

    for name, shown in (("record.html", "recorded"), ("refresh.html", "refresh drift: text")):
        page = (llm_pytester.path / "out" / name).read_bytes()
        for secret in (key, token, scratch):
            assert secret.encode() not in page, (name, secret)
        seen = PageText()
        seen.feed(page.decode())
        text = "\n".join(seen.text)
        for expected in (
            shown,
            "echo[0]: my config uses <scrubbed:OPENAI_API_KEY> and <scrubbed> #",  # the answer, its secrets replaced
            "echo[0]: scratch <scrubbed:SCRATCH_TOKEN> #",
            "test_app.py::test_echo[<scrubbed>]\npassed",  # the outcome found under the scrubbed id
            "test_app.py::test_unrecorded[<scrubbed>]\nfailed",
            "no recording for this request",
        ):
            assert expected in text, (name, expected)
