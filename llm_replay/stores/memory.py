"""The in-memory store: a dict of interactions, fresh for each test (``scope="test"``)."""

from __future__ import annotations

from datetime import datetime
from dataclasses import replace
from typing import Iterable, Iterator, Mapping, Sequence

from ..model.interaction import Interaction, Key, OwnerChange
from ..model.scrub import Scrubber


class InMemoryCache:
    """A dict of interactions, fresh for each test; nothing is written to disk."""

    path = None
    hosts: tuple[str, ...] = ()

    def __init__(self, scrubber: Scrubber | None = None) -> None:
        self.scrubber = scrubber or Scrubber()
        self._entries: dict[Key, Interaction] = {}
        self._instants: dict[str, datetime] = {}
        self._clock_reads: dict[str, bool] = {}

    def describe(self) -> str:
        """How the cassette is named in messages."""
        return "in-memory cache (scope='test')"

    def get(self, fingerprint: str, occurrence: int = 0) -> Interaction | None:
        """The interaction recorded under this key, if any."""
        return self._entries.get((fingerprint, occurrence))

    def get_many(self, keys: Iterable[Key]) -> Iterator[Interaction]:
        """The interactions under these keys (those there are)."""
        return (found for found in map(self._entries.get, keys) if found is not None)

    def warm(self, test_ids: Sequence[str]) -> None:
        """Nothing to read ahead: every answer is in memory."""

    def put(self, interaction: Interaction) -> None:
        """Store or overwrite an interaction, scrubbed of credentials."""
        interaction = self.scrubber.interaction(interaction)
        self._entries[interaction.key] = interaction

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, in no promised order."""
        return iter(list(self._entries.values()))

    def delete(self, keys: Iterable[Key], recorded_at: Mapping[Key, str] | None = None) -> int:
        """Forget these interactions (a LangChain cache's ``clear()``); ``recorded_at``: only those still stamped so."""
        stamps = recorded_at or {}
        removed = 0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and stamps.get(key, entry.recorded_at) == entry.recorded_at:
                del self._entries[key]
                removed += 1
        return removed

    def requests(self) -> Iterator[tuple[str, int, str]]:
        """(fingerprint, occurrence, canonical request JSON) of every interaction, oldest recording first."""
        ordered = sorted(self._entries.values(), key=lambda interaction: interaction.recorded_at)
        return iter([(i.fingerprint, i.occurrence, i.request_json) for i in ordered])

    def stored_clock(self, test_id: str) -> tuple[datetime | None, bool | None]:
        """The instant a test recorded at, and whether its recording read the clock (None: unknown)."""
        test_id = self.scrubber.test_id(test_id)
        return self._instants.get(test_id), self._clock_reads.get(test_id)

    def put_instant(self, test_id: str, instant: datetime) -> None:
        """Remember the instant a test recorded at; whether it reads the clock is unknown until it ends."""
        test_id = self.scrubber.test_id(test_id)
        self._instants[test_id] = instant
        self._clock_reads.pop(test_id, None)

    def put_clock_read(self, test_id: str, read: bool) -> None:
        """Remember whether a test that recorded read the clock."""
        test_id = self.scrubber.test_id(test_id)
        if test_id in self._instants:
            self._clock_reads[test_id] = read

    def index(self, owned: bool = False, unreadable: dict[Key, str] | None = None) -> list[tuple[Key, tuple[str, ...], str]]:
        """Every key with the tests that own it and when it was recorded; ``owned``: only those some test owns (owners
        in memory are always readable: ``unreadable`` stays empty)."""
        return [(key, interaction.tests, interaction.recorded_at) for key, interaction in sorted(self._entries.items()) if interaction.tests or not owned]

    def change_owners(self, changes: Mapping[Key, OwnerChange]) -> None:
        """Add and remove owning tests (absent keys are ignored)."""
        for key, change in changes.items():
            if key in self._entries:
                self._entries[key] = replace(self._entries[key], tests=tuple(change.applied_to(self._entries[key].tests, self.scrubber.test_id)))

    def instants(self) -> list[tuple[str, datetime, bool | None]]:
        """Every test's stored instant and clock flag."""
        return [(test_id, instant, self._clock_reads.get(test_id)) for test_id, instant in sorted(self._instants.items())]

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Nothing to release."""
