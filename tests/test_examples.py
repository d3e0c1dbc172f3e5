"""The README's main command: the example suite replays its committed cassette offline, with no API key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_example_suite_replays_offline_without_a_key() -> None:
    environ = {name: value for name, value in os.environ.items() if not name.endswith("_API_KEY") and name != "LLM_REPLAY_MODE"}
    environ["CI"] = "true"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLES), "-p", "no:cacheprovider"],
        capture_output=True, text=True, env=environ, cwd=EXAMPLES.parent, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert "llm_replay: 5 replayed, 0 recorded, 0 missed in 4 tests (mode replay, cassette cassettes/llm_cache.sqlite3)" in result.stdout
