"""Which cassette ``pytest`` would use when started from a directory, so the command defaults to it."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CASSETTE = Path("cassettes") / "llm_cache.sqlite3"


def pytest_rootdir_and_ini(directory: Path) -> tuple[Path, dict[str, object]]:
    """pytest's rootdir for a run started in ``directory`` without arguments, and its ini values.

    pytest's own config-file search (``locate_config``) decides, so pytest.toml, pytest.ini,
    pyproject.toml, tox.ini and setup.cfg count exactly as they do for pytest; then a setup.py
    marks the root, else the directory itself.
    """
    from _pytest.config.findpaths import locate_config

    directory = directory.resolve()
    rootdir, _, ini, _ = locate_config(directory, [directory])
    if rootdir is None:
        rootdir = next((parent for parent in (directory, *directory.parents) if (parent / "setup.py").is_file()), directory)
    return Path(rootdir), {name: getattr(value, "value", value) for name, value in ini.items()}


def default_cassette(directory: Path | None = None) -> Path:
    """The suite cassette pytest would use: ini ``llm_cassette`` under the rootdir, else the default."""
    rootdir, ini = pytest_rootdir_and_ini(directory or Path.cwd())
    configured = ini.get("llm_cassette")
    return rootdir / (str(configured) if configured else DEFAULT_CASSETTE)
