"""The one interface every store implements: what the engine, the CLI and pruning ask of a cassette.

A new store (memory, SQLite, Redis, …) proves itself by passing ``tests/test_store_contract.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from ..model.interaction import Interaction, Key, OwnerChange
    from ..model.scrub import Scrubber


@runtime_checkable
class Store(Protocol):
    """Interactions keyed by (fingerprint, occurrence), the tests that own each, and each test's frozen instant.

    ``put`` scrubs what it stores with ``scrubber`` (no write path can bypass it); ``get`` is a keyed
    lookup, never a scan. ``path`` is the file behind the store, or None when there is none; ``hosts`` are
    the hosts the store itself connects to (a replay's network guard lets them through).
    """

    scrubber: "Scrubber"
    path: object
    hosts: tuple[str, ...]

    def describe(self) -> str:
        """How the store is named in messages (never with a password in it)."""

    def get(self, fingerprint: str, occurrence: int = 0) -> "Interaction | None":
        """The interaction recorded under this key, if any."""

    def get_many(self, keys: Iterable["Key"]) -> Iterator["Interaction"]:
        """The interactions under these keys (those the store has), in as few round trips as it can."""

    def warm(self, test_ids: Sequence[str]) -> None:
        """Read ahead what these tests, about to run, will ask (each one's stored instant, the recordings it owns):
        for a server, where every question is a round trip, and for a read-only file, where one query for the window
        costs less than a lookup per call amid the SDK's work; memory does nothing. Only a read-ahead: every answer
        stays what it would be without it."""

    def put(self, interaction: "Interaction") -> None:
        """Store or overwrite one interaction, scrubbed, atomically."""

    def delete(self, keys: Iterable["Key"], recorded_at: Mapping["Key", str] | None = None) -> int:
        """Remove these interactions; how many there were. ``recorded_at``: only those still stamped so (pruning: one
        written again since it was chosen stays). Deleted means gone: none of their bytes stay in the store's files
        (or its server's memory) once the store is closed."""

    def interactions(self) -> Iterator["Interaction"]:
        """Every interaction."""

    def requests(self) -> Iterator[tuple[str, int, str]]:
        """(fingerprint, occurrence, canonical request JSON) of every interaction, oldest first; no bodies."""

    def index(self, owned: bool = False, unreadable: dict["Key", str] | None = None) -> list[tuple["Key", tuple[str, ...], str]]:
        """Every key with the tests that own it and when it was recorded (for pruning), without the bodies, in key
        order; ``owned``: only the recordings some test owns (all that ownership and pruning can count). A recording
        whose owners cannot be read is an error, or, given ``unreadable``, left out and noted there with what is wrong."""

    def change_owners(self, changes: Mapping["Key", "OwnerChange"]) -> None:
        """Add and remove owning tests of these interactions, atomically against the owners stored now (not as
        read earlier: two sessions that finish at once each keep what they add); keys the store lacks are ignored."""

    def stored_clock(self, test_id: str) -> tuple[datetime | None, bool | None]:
        """The instant a test recorded at, and whether its recording read the clock (None: unknown)."""

    def instants(self) -> list[tuple[str, datetime, bool | None]]:
        """Every test's stored instant and clock flag (for merges and copies)."""

    def put_instant(self, test_id: str, instant: datetime) -> None:
        """Remember the instant a test recorded at."""

    def put_clock_read(self, test_id: str, read: bool) -> None:
        """Remember whether a test that recorded read the clock."""

    def __len__(self) -> int:
        """How many interactions the store holds."""

    def close(self) -> None:
        """Release the store; a file store is left as one plain file."""
