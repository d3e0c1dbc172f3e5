"""``llm_ignore_hosts``: hosts whose calls are never recorded nor replayed (names or ``name:port``, globs)."""

from __future__ import annotations

import fnmatch
from typing import Iterable


class HostPatterns:
    """Entries like ``localhost:6333``, ``*.internal`` or ``vectors.test:80*``; a name without a port matches every port."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.entries = tuple(entry.strip().lower() for entry in entries if entry.strip())
        self._split = tuple(_host_and_port(entry) for entry in self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def matches(self, host: str, port: int | str | None) -> bool:
        """Whether a call to ``host`` on ``port`` is one of these."""
        host, port_text = host.strip("[]").lower(), str(port or "")
        return any(
            fnmatch.fnmatchcase(host, name) and (wanted is None or fnmatch.fnmatchcase(port_text, wanted)) for name, wanted in self._split
        )

    def hosts(self) -> tuple[str, ...]:
        """The host part of every entry (what the network guard lets through, on any port). Not that of an entry for
        every host on some ports (``*:6333``): the guard does not look at ports, and ``*`` would open every host on all."""
        return tuple(dict.fromkeys(name for name, port in self._split if port is None or name.strip("*")))


def _host_and_port(entry: str) -> tuple[str, str | None]:
    if entry.startswith("["):  # [::1]:8080
        host, _, rest = entry[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, port
    return entry, None
