"""pytest configuration shared by the repository's two suites: tests/ (the project's tests) and examples/ (the
example app's suite, replayed from the committed cassette).

Both run with this folder as pytest's rootdir (the ini is pyproject.toml's; `pytest` alone runs its testpaths,
tests/), so both use the suite cassette cassettes/llm_cache.sqlite3, and recordings there are owned by node ids
relative to this folder (`examples/test_support_bot.py::test_summary_is_one_line`). The tests' fixtures live in
tests/conftest.py. Nothing here reaches the sessions the tests start with pytester: those run in temporary folders
with an ini of their own, so that folder is their rootdir and holds their cassette.
"""

import sys
from pathlib import Path

import pytest

# pytest put this folder first on sys.path to import this file; it comes off again. From there, every session the
# tests start in this process (pytester) would find the llm_replay source folder, mark it for assertion rewriting
# after it was imported, and print a warning into the output the tests check. Nothing needs the folder on the
# path: llm_replay is installed, and pytest adds each suite's own folder as it imports the suite's files.
if sys.path and sys.path[0] == str(Path(__file__).parent):
    del sys.path[0]

# pytester starts the plugin's sessions under test; pytest reads ``pytest_plugins`` only from the rootdir's conftest.
pytest_plugins = ("pytester",)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # pyproject.toml sets pytest-asyncio's loop scope for tests/. The example suite's install (".[openai]") has no
    # pytest-asyncio, and pytest would warn that the key is unknown: declare it then, so both suites run clean.
    if not pluginmanager.has_plugin("asyncio"):
        parser.addini("asyncio_default_fixture_loop_scope", "pytest-asyncio's default fixture loop scope (pytest-asyncio is not installed)")
