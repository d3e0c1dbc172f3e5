"""Fixtures shared by the project's tests: the loopback OpenAI-compatible server and pytester helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# pytester's in-process sessions drop from sys.modules what they imported first. httpx2 imports
# httpcore2 on its first request and keeps a map of its exception classes, so a first import inside
# an inner session would leave the outer process with a stale map (ConnectError no longer mapped).
import httpcore2  # noqa: E402,F401
# The same for importlib_metadata (LiteLLM imports it on its first call): it deletes the standard library's
# distribution finder and puts its own on sys.meta_path; imported first inside an inner session, its finder
# would go with that session and leave this process finding no installed distribution at all.
import importlib_metadata  # noqa: E402,F401
# Hypothesis's pytest plugin imports hypothesis at the end of every inner session; imported here once, it stays
# (~0.2 s saved per inner session).
import hypothesis.internal.observability  # noqa: E402,F401
# And PyYAML (vcrpy's serializer, llm-replay import/export): its C extension module stays loaded when an inner
# session drops yaml, and a yaml imported again pairs with the old one's classes ("could not determine a constructor
# for the tag None" in the next import); test_bad_input.py failed so when run alone.
import yaml  # noqa: E402,F401
from fake_openai import FakeOpenAI  # noqa: E402
from redis_server import CI_MARKER, RedisServer, in_ci, require_redis  # noqa: E402
from fakes.anthropic_api import FakeAnthropic  # noqa: E402
from fakes.bedrock_api import FakeBedrock  # noqa: E402
from fakes.gemini_api import FakeGemini  # noqa: E402

# LiteLLM fetches its model price list from the internet when imported, unless told to use its own copy.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

# This session is the project's test harness, not an llm_replay user: CI=true (which CI services set) would make it a
# replaying session, with its own network guard and placeholder keys around every test and every session the tests
# start in this process. Whether this is CI is kept, for the tests that must fail rather than skip there.
if in_ci():
    os.environ[CI_MARKER] = "1"
for _name in ("CI", "LLM_REPLAY_MODE"):
    os.environ.pop(_name, None)

# The project's own environment must not decide what the sessions under test do.
ONLY_OUR_TESTS_PLUGINS_OFF = "-p no:hypothesispytest -p no:langsmith_plugin"
_ISOLATED_VARIABLES = (
    "CI", "LLM_REPLAY_MODE", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "GOOGLE_API_KEY", "GEMINI_API_KEY",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "ANTHROPIC_BASE_URL",
    # an inner session is not one of the outer session's xdist workers
    "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
)


def pytest_configure(config: pytest.Config) -> None:
    # langchain-tests' chat-model suites (imported with its cache suites, never run here) use these marks.
    config.addinivalue_line("markers", "benchmark: pytest-benchmark mark used by langchain-tests")
    config.addinivalue_line("markers", "vcr: pytest-recording mark used by langchain-tests")


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A fresh loopback OpenAI-compatible server; tests may stop it to prove replay is offline."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server on a free loopback port for the session (each test takes its own prefix)."""
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A cassette URL of its own for one test: the shared server, a fresh key prefix."""
    return redis_server.url()


@pytest.fixture
def anthropic_server() -> Iterator[FakeAnthropic]:
    """A loopback Anthropic Messages API."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def gemini_server() -> Iterator[FakeGemini]:
    """A loopback Gemini API."""
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def bedrock_server() -> Iterator[FakeBedrock]:
    """A loopback Bedrock Runtime (Converse)."""
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def aws(env: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No profile of the machine's takes part in signing."""
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.setenv(name, str(tmp_path / "absent"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return env


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CI flag, no mode, no keys: what a new user's shell looks like. Nor the pytest plugins only this repository's
    own tests install (hypothesis, and langsmith's with LangChain): a pytest run in a subprocess that loads them
    spends ~4 s importing them, and an in-process one re-imports hypothesis (seconds)."""
    for name in _ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTEST_ADDOPTS", ONLY_OUR_TESTS_PLUGINS_OFF)
    return monkeypatch


@pytest.fixture
def llm_pytester(pytester: pytest.Pytester, env: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose inner sessions run in a clean environment and a fresh temp dir."""
    write_ini(pytester)
    return pytester


def write_ini(pytester: pytest.Pytester, lines: str = "") -> None:
    """The inner session's ini: pytest-asyncio's loop scope set (it warns otherwise), plus ``lines``."""
    pytester.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{lines}")


def cassette_file(pytester: pytest.Pytester) -> Path:
    """Where an inner session keeps its suite cassette by default."""
    return pytester.path / "cassettes" / "llm_cache.sqlite3"


# An inner test file's helper (after its ``import openai``): each comma-separated prompt asked of ``{base_url}`` in turn.
ASK_EACH = '''

def ask(prompts):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    for prompt in filter(None, prompts.split(",")):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
'''

DAMAGED_AND_SOUND = '''
import datetime

import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


def test_damaged(llm_cache):
    assert ask(f"damaged {{datetime.date.today()}}").startswith("echo")


def test_sound(llm_cache):
    assert ask(f"sound {{datetime.date.today()}}").startswith("echo")
'''


def recorded_damaged_and_sound(pytester: pytest.Pytester, server: FakeOpenAI, env: pytest.MonkeyPatch) -> Path:
    """A recorded suite of two tests, test_damaged (whose row or instant a test then damages) and test_sound; its
    cassette."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    pytester.makepyfile(test_app=DAMAGED_AND_SOUND.format(base_url=server.base_url))
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    return cassette_file(pytester)



def printed(result: pytest.RunResult, tag: str) -> list[str]:
    """What an inner session's tests printed after ``tag`` (run with ``-s``), in order."""
    return [line.split(f"{tag} ", 1)[1] for line in result.outlines if f"{tag} " in line]
