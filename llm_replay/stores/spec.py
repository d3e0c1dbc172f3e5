"""A cassette named by one string, a file path or a URL: the one place that turns it into a Store.

Everything that names a cassette (``--llm-cassette``, ini ``llm_cassette``, ``use_cassette(...)``,
``llm-replay --cassette``, ``llm-replay copy``) comes here, so a new kind of store is one entry in
``_OPENERS`` and touches neither the recorder, the CLI nor the pytest session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from ..errors import CassetteError
from ..model.credentials import without_password

if TYPE_CHECKING:
    from ..model.scrub import Scrubber
    from .base import Store

def _open_redis(spec: str, readonly: bool, scrubber: "Scrubber | None") -> "Store":
    from .redis import RedisCache

    return RedisCache(spec, readonly=readonly, scrubber=scrubber)


def _open_sqlite(spec: str, readonly: bool, scrubber: "Scrubber | None") -> "Store":
    from .sqlite import SQLiteCache

    return SQLiteCache(spec, readonly=readonly, scrubber=scrubber)


# URL scheme -> how to open it; anything without a known scheme is a file path (SQLite).
_OPENERS: dict[str, Callable[[str, bool, "Scrubber | None"], "Store"]] = {"redis": _open_redis, "rediss": _open_redis}


def scheme(spec: str | os.PathLike[str]) -> str | None:
    """The store's URL scheme (``redis``), or None for a file path."""
    text = os.fspath(spec)
    if "://" not in text:
        return None
    name = urlsplit(text).scheme.lower()
    if name not in _OPENERS:
        raise CassetteError(f"cassette {redacted(text)}: unknown kind of store {name}://; name a file, or use one of {', '.join(f'{s}://' for s in _OPENERS)}")
    return name


def resolved(spec: str | os.PathLike[str], base: Path) -> str:
    """A path made absolute against ``base`` (where the user typed it); a URL as it is. A path ending in a separator
    names a folder, which resolving would turn into a file of that name: an error."""
    text = os.fspath(spec)
    if scheme(text):
        return text
    if text.endswith(("/", os.sep)):
        raise CassetteError(
            f"cassette {text} names a folder (it ends in '/'); a cassette is one file: point --llm-cassette (ini llm_cassette) "
            f"at a file inside it, e.g. {Path(text) / 'llm_cache.sqlite3'}"
        )
    return str((base / os.path.expanduser(text)).resolve())


def hosts(spec: str | os.PathLike[str]) -> tuple[str, ...]:
    """The hosts a store connects to (a network guard lets them through): a URL's host; none for a file."""
    text = os.path.expandvars(os.fspath(spec))
    host = urlsplit(text).hostname if scheme(text) else None
    return (host,) if host else ()


def redacted(spec: str | os.PathLike[str]) -> str:
    """The cassette as it may be printed or logged: a URL's password removed."""
    text = os.fspath(spec)
    return without_password(text) if "://" in text else text


def open_store(spec: str | os.PathLike[str], *, readonly: bool = False, must_exist: bool = False, scrubber: "Scrubber | None" = None) -> "Store":
    """The store a path or URL names. ``$VARIABLES`` in a URL are expanded (a password kept out of ini files
    and command lines: ``redis://:${REDIS_PASSWORD}@host``). ``must_exist``: a missing file is an error, not an empty cassette."""
    text = os.fspath(spec)
    kind = scheme(text)
    if kind is not None:
        return _OPENERS[kind](os.path.expandvars(text), readonly, scrubber)
    if must_exist and not Path(text).exists():  # what exists but is no file (a folder, a pipe) SQLiteCache names
        raise CassetteError(f"no cassette at {text}; record one with pytest --llm-mode=record, or name a cassette that exists")
    return _open_sqlite(text, readonly, scrubber)
