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
from typing import Any, Callable, Iterator

# Never frozen: llm_replay itself (latency, recorded_at), SQLite's busy timeout, redis-py's socket timeouts,
# pytest's own durations, and the SDKs and HTTP clients llm_replay stands in front of: they read the clock only for timeouts, retries and
# pools, never to build a prompt, and skipping their modules halves the cost of each freeze.
IGNORED_PACKAGES = (
    "llm_replay", "sqlite3", "redis",
    "openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2", "h11", "anyio", "sniffio", "vcr", "yaml", "urllib3", "requests",
    "requests_toolbelt", "aiohttp",
    # botocore signs (SigV4) and google-auth checks token expiry with the wall clock: a frozen one fails both live
    "botocore", "boto3", "google.auth", "google.genai", "litellm", "pydantic_ai",
)
# freezegun matches a module by the start of its name: "openai." (a package's modules), never "openai", which would take in
# the app's own openai_prompts.py or redis_cache.py. A package's __init__ reads no clock when called.
IGNORED_MODULES = ("_pytest.timing", *(f"{package}." for package in IGNORED_PACKAGES))
# freezegun's own ignore list holds modules that run the test's code, within the few frames it looks up the stack: a
# function a thread (``threading``, ``concurrent.futures`` over it, ``queue``) or a pool (``multiprocessing``) runs
# read the real ``time.time()`` while ``datetime.now()`` was frozen, and ``gi`` (PyGObject) is a prefix of any ``git*``
# module. Their timeouts read the monotonic clocks, which stay real.
_RUN_THE_TESTS_CODE = frozenset({"threading", "queue", "multiprocessing", "gi"})
_MONOTONIC_CLOCKS = ("monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns")


def new_instant() -> datetime:
    """The real time now, in UTC, to the second: a test's instant the first time it records."""
    return datetime.now(timezone.utc).replace(microsecond=0)


class ClockWatch:
    """Tells whether the code under test read the frozen wall clock, so a replay can skip freezing a test that never does.

    freezegun asks its newest time factory for every frozen read (``datetime.now()``, ``utcnow()``,
    ``date.today()``, ``time.time()``, ``time_ns()``, ``gmtime()``, ``localtime()``, ``strftime()``), and answers
    the modules it ignores with the real clock, without asking. Standing in for that factory sees every read.
    """

    def __init__(self, factory: Callable[[], datetime] | None = None) -> None:
        self._factory = factory
        self.read = factory is None  # a clock frozen by someone else cannot be watched: assume it is read

    def __call__(self) -> datetime:
        self.read = True
        return self._factory()  # type: ignore[misc]


@contextmanager
def frozen_clock(instant: datetime) -> Iterator[ClockWatch]:
    """Freeze the wall clock at ``instant`` for the block; monotonic clocks and event loops keep running.

    Yields a ClockWatch whose ``read`` says whether the block read the clock. A clock that is already
    frozen (the test's own freezegun or pytest-freezer fixture) is left as it is: the test chose its instant.
    """
    from freezegun import api, freeze_time

    if api.freeze_factories:
        yield ClockWatch()
        return
    _typed_as_real_dates(api)
    freezer = freeze_time(instant, ignore=list(IGNORED_MODULES), real_asyncio=True)
    freezer.ignore = tuple(module for module in freezer.ignore if module not in _RUN_THE_TESTS_CODE)
    freezer.start()
    try:
        _restore_monotonic_clocks(api, freezer)
        watch = ClockWatch(api.freeze_factories[-1])
        api.freeze_factories[-1] = watch
        yield watch
    finally:
        freezer.stop()


def _typed_as_real_dates(api: Any) -> None:
    """Let pydantic type freezegun's FakeDatetime and FakeDate as the real classes.

    A module an SDK imports lazily during the test (LiteLLM does, on its first call) reads ``datetime`` while it
    is freezegun's class; a pydantic model annotated with it would fail to build without this.
    """
    for fake, real in ((api.FakeDatetime, api.real_datetime), (api.FakeDate, api.real_date)):
        if "__get_pydantic_core_schema__" not in vars(fake):
            fake.__get_pydantic_core_schema__ = classmethod(lambda cls, source, handler, real=real: handler.generate_schema(real))


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
