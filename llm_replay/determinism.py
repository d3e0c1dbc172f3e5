"""Wall-clock time frozen at a test's recorded instant, so prompts that carry the date or time replay forever.

freezegun freezes the wall clock (``datetime.now()``, ``date.today()``, ``time.time()``, ``time.gmtime()``, …).
Monotonic clocks stay real: they carry no date, and code that waits for them to advance (timeouts,
retry deadlines, rate meters) would hang or divide by zero if they stood still. Event loops keep real
time through freezegun's ``real_asyncio``, so ``asyncio.sleep`` and ``asyncio.timeout`` work.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

# Never frozen: llm_replay itself (latency, recorded_at), SQLite's busy timeout, pytest's own durations, and the
# SDKs and HTTP clients llm_replay stands in front of: they read the clock only for timeouts, retries and
# pools, never to build a prompt, and skipping their modules halves the cost of each freeze.
IGNORED_MODULES = (
    "llm_replay.", "sqlite3", "_pytest.timing",
    "openai", "anthropic", "httpx", "httpcore", "h11", "anyio", "sniffio", "vcr", "yaml", "urllib3", "requests", "aiohttp",
)
_MONOTONIC_CLOCKS = ("monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns")


def new_instant() -> datetime:
    """The real time now, in UTC, to the second: a test's instant the first time it records."""
    return datetime.now(timezone.utc).replace(microsecond=0)


@contextmanager
def frozen_clock(instant: datetime) -> Iterator[None]:
    """Freeze the wall clock at ``instant`` for the block; monotonic clocks and event loops keep running.

    A clock that is already frozen (the test's own freezegun or pytest-freezer fixture) is left as it is:
    the test chose its instant.
    """
    from freezegun import api, freeze_time

    if api.freeze_factories:
        yield
        return
    freezer = freeze_time(instant, ignore=list(IGNORED_MODULES), real_asyncio=True)
    freezer.start()
    try:
        _restore_monotonic_clocks(api, freezer)
        yield
    finally:
        freezer.stop()


def _restore_monotonic_clocks(api: Any, freezer: Any) -> None:
    """Undo freezegun's patches of the monotonic clocks, in ``time`` and wherever modules imported them."""
    real_by_fake = {
        getattr(api, f"fake_{name}"): getattr(api, f"real_{name}")
        for name in _MONOTONIC_CLOCKS
        if hasattr(api, f"fake_{name}")
    }
    for name in _MONOTONIC_CLOCKS:
        clock = getattr(time, name, None)
        if clock in real_by_fake:
            setattr(time, name, real_by_fake[clock])
    for module, attribute, original in freezer.undo_changes:
        if getattr(module, attribute, None) in real_by_fake:
            setattr(module, attribute, original)
