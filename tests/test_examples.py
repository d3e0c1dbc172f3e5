"""The README's first command: from the repository root, `CI=true pytest examples` replays the example suite from the
top-level cassettes/llm_cache.sqlite3, offline, with no API key and no ini file of its own."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm_replay.cli import main
from llm_replay.stores.sqlite import SQLiteCache

ROOT = Path(__file__).parents[1]
CASSETTE = ROOT / "cassettes" / "llm_cache.sqlite3"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_example_suite_replays_offline_from_the_top_level_cassette() -> None:
    environ = {name: value for name, value in os.environ.items() if not name.endswith("_API_KEY") and name not in ("LLM_REPLAY_MODE", "OPENAI_BASE_URL")}
    environ["CI"] = "true"
    before = _digest(CASSETTE)
    # without the plugins only the test suite installs (pytest-asyncio, hypothesis, langsmith's), as the README's install
    # of the example suite has it
    no_test_plugins = ("-p", "no:asyncio", "-p", "no:hypothesispytest", "-p", "no:langsmith_plugin")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "examples", "-v", "-p", "no:cacheprovider", *no_test_plugins],
        capture_output=True, text=True, env=environ, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rootdir: {ROOT}" in result.stdout and "configfile: pyproject.toml" in result.stdout
    assert "4 passed in" in result.stdout and "warning" not in result.stdout, result.stdout
    assert "llm_replay: 5 replayed, 0 recorded, 0 missed in 4 tests (mode replay, cassette cassettes/llm_cache.sqlite3)" in result.stdout
    quoted = _readme_block_after("The first command above prints:")
    assert quoted and all(line in result.stdout.splitlines() for line in quoted), f"README quotes {quoted}, the run printed:\n{result.stdout}"
    # The main suite replays the committed recordings, never writes them (no usage rows, no WAL left beside it).
    assert _digest(CASSETTE) == before
    assert not any(CASSETTE.with_name(CASSETTE.name + suffix).exists() for suffix in ("-wal", "-shm"))
    # Recordings and frozen-clock instants are owned by the node ids the example tests have from the root.
    node_ids = set(re.findall(r"^(examples/\S+::\S+) PASSED", result.stdout, re.MULTILINE))
    assert len(node_ids) == 4
    cassette = SQLiteCache(CASSETTE, readonly=True)
    try:
        owners = {test for _, tests, _ in cassette.index() for test in tests}
        instants = {test_id for test_id, _, _ in cassette.instants()}
    finally:
        cassette.close()
    assert owners and owners <= node_ids, f"recordings owned by tests that do not exist: {owners - node_ids}"
    assert instants and instants <= node_ids, f"instants kept for tests that do not exist: {instants - node_ids}"


def _readme_block_after(sentence: str) -> list[str]:
    """The lines of the README's first fenced block after ``sentence``."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(sentence):]
    return after.split("```", 2)[1].strip("\n").splitlines()


def test_committed_recordings_hold_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(ROOT / "cassettes")]) == 0, capsys.readouterr().out


def test_the_top_level_holds_the_suites_configuration(request: pytest.FixtureRequest) -> None:
    """`pytest` with no arguments runs tests/; the example suite needs no ini of its own (the root's is theirs)."""
    assert Path(request.config.rootpath) == ROOT
    assert request.config.getini("testpaths") == ["tests"]
    assert (ROOT / "conftest.py").is_file()
    assert not [path.name for path in (ROOT / "examples").iterdir() if path.name in ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "cassettes")]


def test_sessions_under_test_load_nothing_from_the_repository(llm_pytester: pytest.Pytester) -> None:
    """The root conftest and cassette stay out of the sessions the tests start: their rootdir is their own folder, and
    the repository's folder on sys.path does not make pytest in them warn about llm_replay."""
    llm_pytester.makepyfile(
        test_inner=f"""
from pathlib import Path

def test_inner(request):
    loaded = {{Path(getattr(plugin, "__file__", None) or ".").resolve() for plugin in request.config.pluginmanager.get_plugins()}}
    assert Path({str(ROOT / "conftest.py")!r}) not in loaded
    assert Path(request.config.rootpath) == Path({str(llm_pytester.path)!r})
"""
    )
    result = llm_pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "warning" not in result.stdout.str(), result.stdout.str()  # e.g. llm_replay "already imported", found on the path
