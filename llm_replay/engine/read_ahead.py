"""Warming a store for the tests about to run, a window at a time.

For a store on a server every question is a round trip, most of what a replayed call costs; asked for the
next ``WINDOW`` tests at once, a session of one-call tests makes one round trip per window, not two per test.
A read-only SQLite file reads the window's recordings with one query, not one lookup per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from ..stores.base import Store

# Tests read ahead at once: a round trip per 32 tests, and what is read (within the store's byte budget) is at
# most 32 tests' recordings, let go when the window moves on.
WINDOW = 32


class ReadAhead:
    """The order the session runs its ``llm_cache`` tests in; ``before`` warms the store for a window of them.

    A pytest-xdist worker runs only some of them, in runs of consecutive tests the scheduler hands it: a window
    is as long as twice the run of the last one (up to WINDOW), so a worker reads little it will not use."""

    def __init__(self, order: Sequence[str] = ()) -> None:
        self._order = list(order)
        self._position = {test_id: index for index, test_id in enumerate(self._order)}
        self._warmed: tuple[Store | None, frozenset[str]] = (None, frozenset())  # the store last warmed, for which tests
        self._size = WINDOW  # of the next window
        self._ran = 0  # tests of the last window from the order that ran here

    def before(self, store: "Store", test_id: str) -> None:
        """Called as a test starts: warm the store for it and the tests after it, unless that is done already."""
        warmed, tests = self._warmed
        if warmed is store and test_id in tests:
            self._ran += 1
            return
        start = self._position.get(test_id)
        if start is None:  # asked for outside the collected order (by name, at run time): warmed alone
            store.warm([test_id])
            self._warmed = (store, frozenset([test_id]))
            return
        if self._ran:
            self._size = min(WINDOW, 2 * self._ran)
        window = self._order[start : start + self._size]
        store.warm(window)
        self._warmed = (store, frozenset(window))
        self._ran = 1
