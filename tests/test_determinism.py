"""The frozen clock alone: the wall clock reads the instant, monotonic clocks and llm_replay's own clock stay real."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
import sys
import time
from datetime import date, datetime, timezone

from freezegun import freeze_time

from llm_replay.engine.clock import frozen_clock
from llm_replay.engine.recorder import Recorder
from llm_replay.engine.settings import Mode
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import RecordedResponse
from llm_replay.stores.memory import InMemoryCache
from llm_replay.stores.sqlite import SQLiteCache

INSTANT = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def test_wall_clock_reads_the_instant_and_monotonic_clocks_keep_running():
    with frozen_clock(INSTANT):
        assert datetime.now(timezone.utc) == INSTANT
        assert datetime.now() == datetime(2001, 2, 3, 4, 5, 6), "naive now() is the instant in UTC on every machine"
        assert date.today() == date(2001, 2, 3)
        assert time.time() == INSTANT.timestamp()
        assert time.gmtime()[:6] == (2001, 2, 3, 4, 5, 6)
        assert time.strftime("%Y") == "2001"
        monotonic, perf = time.monotonic(), time.perf_counter_ns()
        time.sleep(0.01)
        assert time.monotonic() > monotonic and time.perf_counter_ns() > perf
        assert time.time() == INSTANT.timestamp(), "sleeping does not move the frozen wall clock"
    assert datetime.now(timezone.utc).year > 2001


WALL_CLOCK_READS = {
    "datetime.now()": lambda: datetime.now(),
    "datetime.now(tz)": lambda: datetime.now(timezone.utc),
    "datetime.utcnow()": lambda: datetime.utcnow(),
    "datetime.today()": lambda: datetime.today(),
    "date.today()": lambda: date.today(),
    "time.time()": lambda: time.time(),
    "time.time_ns()": lambda: time.time_ns(),
    "time.gmtime()": lambda: time.gmtime(),
    "time.localtime()": lambda: time.localtime(),
    "time.strftime()": lambda: time.strftime("%Y"),
}


def test_every_read_of_the_frozen_wall_clock_is_seen_and_nothing_else():
    for name, read in WALL_CLOCK_READS.items():
        with frozen_clock(INSTANT) as clock:
            time.monotonic(), time.perf_counter_ns(), time.sleep(0), datetime(2020, 1, 1), time.gmtime(0)
            assert not clock.read, f"{name}: no wall clock read yet"
            read()
            assert clock.read, f"{name} read the frozen clock unseen"


def test_a_clock_frozen_by_the_test_itself_counts_as_read():
    with freeze_time("1999-12-31 23:59:59"), frozen_clock(INSTANT) as clock:
        assert clock.read, "llm_replay cannot watch another freeze: it assumes the clock is read"


def test_event_loops_keep_real_time():
    async def timed_out() -> bool:
        try:
            await asyncio.wait_for(asyncio.sleep(60), timeout=0.01)
        except TimeoutError:
            return True
        return False

    with frozen_clock(INSTANT):
        assert asyncio.run(timed_out())


def test_the_tests_own_freeze_wins_inside_and_outside():
    with frozen_clock(INSTANT):
        with freeze_time("1999-12-31 23:59:59"):
            assert date.today() == date(1999, 12, 31)
        assert date.today() == date(2001, 2, 3)
    with freeze_time("1999-12-31 23:59:59"):
        with frozen_clock(INSTANT):
            assert date.today() == date(1999, 12, 31)
        assert date.today() == date(1999, 12, 31)


def test_llm_replay_stamps_recordings_with_the_real_time():
    recorder = Recorder(InMemoryCache(), Mode.RECORD, test_id="t::x", frozen_at=INSTANT, keep_instant=True)
    request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", b'{"model": "m"}', "application/json")
    with frozen_clock(INSTANT):
        recorder.record(*recorder.keyed(request), RecordedResponse(200, "OK", {}, b"{}"), latency_s=0.5)
    assert recorder.interactions[0].recorded_at[:4] != "2001"
    assert recorder.cassette.stored_clock("t::x")[0] == INSTANT


def test_instants_persist_and_older_files_gain_the_table(tmp_path):
    path = tmp_path / "cassette.sqlite3"
    cassette = SQLiteCache(path)
    cassette.put_instant("t::x", INSTANT)
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE test_instants")  # a file written before instants were kept
    readonly = SQLiteCache(path, readonly=True)
    assert readonly.stored_clock("t::x")[0] is None
    readonly.close()
    writable = SQLiteCache(path)
    writable.put_instant("t::x", INSTANT)
    assert writable.stored_clock("t::x")[0] == INSTANT
    writable.close()
    assert SQLiteCache(path, readonly=True).stored_clock("t::x")[0] == INSTANT


def test_threads_read_the_instant_too():
    """freezegun's default ignore list holds ``threading``: a function a thread runs read the real time.time() there."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Thread

    for name, read in WALL_CLOCK_READS.items():
        with frozen_clock(INSTANT):
            expected = read()  # the same read in this thread
        with frozen_clock(INSTANT) as clock:
            seen: list[object] = []
            thread = Thread(target=lambda: seen.append(read()))
            thread.start()
            thread.join()
            with ThreadPoolExecutor(1) as pool:
                seen.append(pool.submit(read).result())
            assert seen == [expected, expected], f"{name} in a thread"
            assert clock.read, f"{name} in a thread read the frozen clock unseen"


def test_the_apps_modules_named_like_an_sdk_read_the_instant(tmp_path, monkeypatch):
    """Only the SDKs' own modules keep the real clock: ``openai_prompts`` or ``redis_cache`` is the app's code."""
    names = ("openai_prompts", "redis_cache", "anthropic_tools", "yaml_config", "requests_builder")
    for name in names:
        (tmp_path / f"{name}.py").write_text("import time\nfrom datetime import date, datetime\n\ndef stamp():\n    return datetime.now(), date.today(), time.time()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        modules = [importlib.import_module(name) for name in names]  # imported before the freeze, as an app's are
        with frozen_clock(INSTANT):
            for module in modules:
                assert module.stamp() == (datetime(2001, 2, 3, 4, 5, 6), date(2001, 2, 3), INSTANT.timestamp()), module.__name__
    finally:
        for name in names:
            sys.modules.pop(name, None)
