"""Recordings a store keeps in memory after reading them, so a test replaying one request many times reads it once.

Bounded (flat memory over a long session): a byte budget, a count, and no answer larger than a slice of the
budget (a 50 MB response is not held after its test).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable, Iterator

from ..model.interaction import Interaction, Key

HIT_CACHE_BYTES = 32 * 1024 * 1024
HIT_CACHE_ITEM_BYTES = HIT_CACHE_BYTES // 16
# ... and at most this many, so a long session of small answers does not keep thousands of recordings alive (memory,
# and the garbage collector's work on every collection); a prompt repeated within a test or the next few still hits.
RECENT_KEPT = 16


class RecentRecordings:
    """Recently read recordings, least recently used dropped first, within a byte budget and RECENT_KEPT entries; safe across threads."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Key, Interaction] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Key) -> Interaction | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, interaction: Interaction) -> None:
        size = _size(interaction)
        with self._lock:
            self._drop(interaction.key)
            if size > HIT_CACHE_ITEM_BYTES:
                return
            self._entries[interaction.key] = interaction
            self._bytes += size
            while self._bytes > HIT_CACHE_BYTES or len(self._entries) > RECENT_KEPT:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= _size(dropped)

    def pop(self, key: Key) -> None:
        with self._lock:
            self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: Key) -> None:
        dropped = self._entries.pop(key, None)
        if dropped is not None:
            self._bytes -= _size(dropped)


def within_budget(interactions: Iterable[Interaction]) -> Iterator[Interaction]:
    """What a store may read ahead of these: none larger than HIT_CACHE_ITEM_BYTES (looked up when asked), and no
    more than HIT_CACHE_BYTES in all."""
    total = 0
    for interaction in interactions:
        size = _size(interaction)
        if size > HIT_CACHE_ITEM_BYTES:
            continue
        total += size
        if total > HIT_CACHE_BYTES:
            return
        yield interaction


def _size(interaction: Interaction) -> int:
    return len(interaction.response.body) + len(interaction.request_json)
