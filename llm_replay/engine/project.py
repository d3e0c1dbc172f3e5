"""Which cassette and secrets ``pytest`` would use when started from a directory, so the command defaults to them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .settings import DEFAULT_CASSETTE

if TYPE_CHECKING:
    from ..model.scrub import Scrubber
    from ..stores.ledger import RunLedger
    from .hooks import BeforeRecord
    from .pricing import PriceBook


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


def default_cassette(directory: Path | None = None) -> str:
    """The suite cassette pytest would use: ini ``llm_cassette`` (a file under the rootdir, or a URL), else the default file."""
    from ..stores.spec import resolved

    rootdir, ini = pytest_rootdir_and_ini(directory or Path.cwd())
    configured = ini.get("llm_cassette")
    return resolved(str(configured) if configured else DEFAULT_CASSETTE, rootdir)


def run_ledger(cassette: str | Path, directory: Path | None = None) -> "RunLedger":
    """The run bookkeeping pytest keeps for ``cassette`` (in its cache dir: ini ``cache_dir``, else .pytest_cache under the rootdir)."""
    from ..stores.ledger import RunLedger, ledger_path

    rootdir, ini = pytest_rootdir_and_ini(directory or Path.cwd())
    cache_dir = rootdir / str(ini.get("cache_dir") or ".pytest_cache")
    return RunLedger(ledger_path(cache_dir / "d" / "llm_replay", cassette))


def ini_scrubber(directory: Path | None = None) -> "Scrubber":
    """The Scrubber pytest would use: ini ``llm_secret_env`` and ``llm_secret_patterns`` added to the built-in rules,
    so what the command writes (import, export, merge) is scrubbed as a pytest run would scrub it."""
    from ..errors import CommandError
    from ..model.scrub import Scrubber

    _, ini = pytest_rootdir_and_ini(directory or Path.cwd())
    try:
        return Scrubber(env_names=_lines(ini.get("llm_secret_env")), patterns=_lines(ini.get("llm_secret_patterns")))
    except ValueError as error:
        raise CommandError(str(error)) from None


def ini_prices(directory: Path | None = None) -> "PriceBook":
    """The prices a pytest run would use: genai-prices', with the ini's ``llm_prices`` lines first."""
    from ..errors import CommandError
    from .pricing import PriceBook, parse_prices

    _, ini = pytest_rootdir_and_ini(directory or Path.cwd())
    try:
        return PriceBook(parse_prices(_lines(ini.get("llm_prices")), "ini option llm_prices"))
    except ValueError as error:
        raise CommandError(str(error)) from None


def ini_before_record(directory: Path | None = None) -> "BeforeRecord | None":
    """The ini's ``llm_before_record`` hook (``package.module:function``), imported from the rootdir, or None."""
    import sys

    from ..errors import CommandError
    from .hooks import load_hook

    rootdir, ini = pytest_rootdir_and_ini(directory or Path.cwd())
    spec = ini.get("llm_before_record")
    if not spec:
        return None
    if str(rootdir) not in sys.path:
        sys.path.insert(0, str(rootdir))  # as pytest's rootdir conftest would make the project importable
    try:
        return load_hook(str(spec), "ini option llm_before_record")
    except ValueError as error:
        raise CommandError(str(error)) from None


def _lines(value: object) -> tuple[str, ...]:
    """An ini ``linelist`` as pytest's getini reads it: one entry per non-blank line, or a TOML list."""
    if value is None:
        return ()
    entries = value.splitlines() if isinstance(value, str) else [str(item) for item in value]  # type: ignore[attr-defined]
    return tuple(entry.strip() for entry in entries if entry.strip())
