"""pytest configuration shared by the repository's two suites: tests/ (the project's tests) and examples/ (the
example app's suite, replayed from the committed cassette).

Both run with this folder as pytest's rootdir (the ini is pyproject.toml's; `pytest` alone runs its testpaths,
tests/), so both use the suite cassette cassettes/llm_cache.sqlite3, and recordings there are owned by node ids
relative to this folder (`examples/test_support_bot.py::test_summary_is_one_line`). The tests' fixtures live in
tests/conftest.py. Nothing here reaches the sessions the tests start with pytester: those run in temporary folders
with an ini of their own, so that folder is their rootdir and holds their cassette.
"""

# pytester starts the plugin's sessions under test; pytest reads ``pytest_plugins`` only from the rootdir's conftest.
pytest_plugins = ("pytester",)
