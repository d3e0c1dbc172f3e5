"""Fixtures shared by the project's tests: the loopback OpenAI-compatible server and pytester helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# pytester's in-process sessions drop from sys.modules what they imported first. httpx2 imports
# httpcore2 on its first request and keeps a map of its exception classes, so a first import inside
# an inner session would leave the outer process with a stale map (ConnectError no longer mapped).
import httpcore2  # noqa: E402,F401
from fake_openai import FakeOpenAI  # noqa: E402
from redis_server import RedisServer, require_redis  # noqa: E402

# The project's own environment must not decide what the sessions under test do.
_ISOLATED_VARIABLES = (
    "CI", "LLM_REPLAY_MODE", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL",
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
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CI flag, no mode, no keys: what a new user's shell looks like."""
    for name in _ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
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



def printed(result: pytest.RunResult, tag: str) -> list[str]:
    """What an inner session's tests printed after ``tag`` (run with ``-s``), in order."""
    return [line.split(f"{tag} ", 1)[1] for line in result.outlines if f"{tag} " in line]
