"""The Redis cassette against the SDK floor and against SQLite: ``python benchmarks/redis_store.py``.

Replay per call: the same paired measurement as ``benchmarks/run.py`` (the openai SDK over
``httpx2.MockTransport`` is the floor; each replay batch is timed right after a floor batch), with Redis on
loopback and SQLite alongside. Each batch opens the cassette afresh (untimed, as a session does once) and
runs its calls as tests do under the plugin: the store is warmed ahead of the tests (timed), which for Redis
is one round trip per 32 tests that reads their instants and every recording they own. Rows for tests
making 1, 10 and all the batch's calls show what those round trips cost per call. A Redis round trip waits on another
process, which CPU time does not see, so the table gives wall-clock ratios too (the honest ones for a
network store).

A control row replays from memory with a 200 µs sleep in every lookup: a wait that uses no CPU of its own,
to show what waiting does to the CPU time of the rest of the call.

Record throughput: 4 writer processes ``put`` distinct recordings into one cassette at once (SQLite's
write lock against Redis's MULTI/EXEC), and the same with one writer.

Needs ``redis-server`` on PATH (or /usr/bin) and ``pip install -e '.[redis,bench]'``. About a minute.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import run as bench  # noqa: E402  the floor, the pairing and the table of benchmarks/run.py
from redis_server import RedisServer  # noqa: E402  the tests' loopback redis-server

from llm_replay.engine.read_ahead import ReadAhead  # noqa: E402
from llm_replay.engine.recorder import Recorder  # noqa: E402
from llm_replay.engine.settings import Mode  # noqa: E402
from llm_replay.layers.activation import activated  # noqa: E402
from llm_replay.stores.memory import InMemoryCache  # noqa: E402
from llm_replay.stores.spec import open_store  # noqa: E402

CLOCKS: dict[str, Callable[[], float]] = {"CPU": time.process_time, "wall": time.perf_counter}
BLOCK_S = 0.0002  # about what a Redis lookup waits on a busy 2-core machine


def test_of(n: int, k: int) -> str:
    """The test that makes the k-th of the batch's calls when each test makes ``n``."""
    return f"bench.py::test_of_{n}[{k // n}]"


def fill(spec: str, size: int, picked: list[int], calls_per_test: tuple[int, ...]) -> str:
    """``size`` recordings; the ``picked`` ones owned by the tests that replay them in each grouping."""
    position = {i: k for k, i in enumerate(picked)}
    store = open_store(spec)
    try:
        for i, interaction in enumerate(bench.interactions(size)):
            owners = tuple(test_of(n, position[i]) for n in calls_per_test) if i in position else ("bench.py::test_other",)
            store.put(replace(interaction, tests=owners))
    finally:
        store.close()
    return spec


class Session:
    """A replay session over one cassette, opened afresh before each batch; its calls run as tests making ``n``
    calls each, the store warmed ahead of them as the plugin does (engine/read_ahead.py)."""

    def __init__(self, spec: str, picked: list[int], n: int) -> None:
        self.spec, self.n = spec, n
        self.position = {i: k for k, i in enumerate(picked)}
        self.order = list(dict.fromkeys(test_of(n, k) for k in range(len(picked))))
        self.store: Any = None
        self.read_ahead = ReadAhead()

    @contextmanager
    def opened(self) -> Iterator[None]:
        self.store, self.read_ahead = open_store(self.spec, readonly=True), ReadAhead(self.order)
        try:
            with activated(Recorder(self.store, Mode.REPLAY)):
                yield
        finally:
            self.store.close()

    def ask(self, i: int) -> None:
        k = self.position[i]
        if k % self.n == 0:  # a test starts
            self.read_ahead.before(self.store, test_of(self.n, k))
        bench.ask(i)


def replay_rows(cassettes: dict[str, str], size: int, picked: list[int], calls_per_test: tuple[int, ...], repeats: int) -> list[bench.Row]:
    """Per call and paired ratio to the floor for each cassette and test size, under each clock."""
    rows = []
    for clock_name, clock in CLOCKS.items():
        bench.clock = clock  # run.py's timers read this module global
        for name, spec in cassettes.items():
            for n in calls_per_test:
                session = Session(spec, picked, n)
                us, ratio = bench.paired_us(session.ask, bench.ask, picked, repeats, setup=session.opened)
                each = "1 call" if n == 1 else f"{n} calls"
                rows.append(bench.Row(f"replay per call, {name}, {size:,} interactions, tests of {each} ({clock_name} time)", us, f"{ratio:.2f}x floor"))
    bench.clock = time.process_time
    return rows


class BlockingMemory(InMemoryCache):
    """A control: the in-memory store, but every lookup blocks for ``BLOCK_S`` as a round trip does, using
    next to no CPU itself. What it adds to a replayed call is what waiting costs the rest of the call."""

    def get(self, fingerprint: str, occurrence: int = 0) -> Any:
        time.sleep(BLOCK_S)
        return super().get(fingerprint, occurrence)


def control_rows(size: int, count: int, repeats: int) -> list[bench.Row]:
    """In-memory replay with and without a blocking wait per lookup (CPU time, paired with the floor)."""
    rows = []
    for name, store in (("in-memory", InMemoryCache()), (f"in-memory, blocking {BLOCK_S * 1e6:.0f} µs per lookup", BlockingMemory())):
        for interaction in bench.interactions(size):
            store.put(interaction)
        us, ratio = bench.paired_us(bench.ask, bench.ask, bench.spread(size, count), repeats, setup=lambda: activated(Recorder(store, Mode.REPLAY)))
        rows.append(bench.Row(f"control: replay per call, {name} (CPU time)", us, f"{ratio:.2f}x floor"))
    return rows


def lookup_rows(cassettes: dict[str, str], size: int, count: int, repeats: int) -> list[bench.Row]:
    """The store's ``get`` alone, cold (a fresh store per batch, distinct keys): what a replayed call adds."""
    keys = [interaction.key for interaction in bench.interactions(size)]
    picked = bench.spread(size, count)
    rows = []
    for name, spec in cassettes.items():
        for clock_name, clock in CLOCKS.items():
            bench.clock = clock
            store = None

            def fresh() -> None:
                nonlocal store
                if store is not None:
                    store.close()
                store = open_store(spec, readonly=True)

            def lookups(indexes: list[int]) -> None:
                for i in indexes:
                    assert store.get(*keys[i]) is not None

            samples = []
            for _ in range(repeats):
                fresh()
                samples.append(bench.per_call_us(lookups, picked, 1))
            store.close()
            rows.append(bench.Row(f"  of which the lookup, {name} ({clock_name} time)", sorted(samples)[len(samples) // 2]))
    bench.clock = time.process_time
    return rows


def _write(spec: str, worker: int, puts: int, start: multiprocessing.Barrier, done: "multiprocessing.Queue[float]") -> None:
    # Distinct keys per writer: the same requests as repeats numbered by writer (occurrence), nothing shared.
    recordings = [replace(interaction, occurrence=worker) for interaction in bench.interactions(puts)]
    store = open_store(spec)
    start.wait()
    for recording in recordings:
        store.put(recording)
    done.put(time.perf_counter())
    store.close()


def throughput(spec: str, writers: int, puts: int) -> float:
    """Recordings per second, ``writers`` processes putting ``puts`` each into one cassette at once."""
    context = multiprocessing.get_context("fork")
    start, done = context.Barrier(writers + 1), context.Queue()
    processes = [context.Process(target=_write, args=(spec, worker, puts, start, done)) for worker in range(writers)]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    finished = max(done.get(timeout=300) for _ in processes)
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"a writer failed on {spec}"
    store = open_store(spec, readonly=True)
    try:
        assert len(store) == writers * puts, f"{spec}: {len(store)} of {writers * puts} recordings"
    finally:
        store.close()
    return writers * puts / (finished - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats: a smoke run, not a measurement")
    options = parser.parse_args()
    size, count, repeats, puts = (1_000, 100, 3, 200) if options.quick else (10_000, 300, 7, 1_000)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llm_replay_redis_bench_") as temp:
        workdir = Path(temp)
        redis = RedisServer(workdir / "redis").start()
        try:
            for _ in range(50):
                bench.ask(0)  # warm the SDK's caches before anything is timed
            floor_us = bench.per_call_us(bench.calls(bench.ask), list(range(count)), repeats)
            rows = [bench.Row("floor: openai SDK over httpx2.MockTransport, ~1 KB JSON (CPU time)", floor_us, "1.00x floor")]
            picked, calls_per_test = bench.spread(size, count), (1, 10, count)
            cassettes = {name: fill(spec, size, picked, calls_per_test) for name, spec in (("Redis on loopback", redis.url("replay")), ("SQLite", str(workdir / "replay.sqlite3")))}
            rows += replay_rows(cassettes, size, picked, calls_per_test, repeats)
            rows += lookup_rows(cassettes, size, count, repeats)
            rows += control_rows(size, count, repeats)
            rates = {}
            for writers in (1, 4):
                for name, spec in (("SQLite", str(workdir / f"record-{writers}.sqlite3")), ("Redis on loopback", redis.url(f"record{writers}"))):
                    rates[name, writers] = throughput(spec, writers, puts)
                    rows.append(bench.Row(f"record throughput, {name}, {writers} writer process{'es' if writers > 1 else ''} x {puts:,} puts", None, f"{rates[name, writers]:,.0f} puts/s"))
        finally:
            redis.stop()
    print(bench.table(rows))
    print()
    for n in calls_per_test:
        ratios = [float(row.ratio.split("x")[0]) for row in rows if row.name.startswith("replay per call, Redis") and f"tests of {n} call" in row.name]
        print(f"{'PASS' if max(ratios) <= 1.3 else 'MISS'}  replay per call from Redis on loopback <= 1.3x the SDK floor, tests of {n} call{'s' if n > 1 else ''} "
              f"(paired; CPU, wall): {' / '.join(f'{r:.2f}x' for r in ratios)}")
    print(f"      record with 4 concurrent writers: Redis {rates['Redis on loopback', 4]:,.0f} puts/s, SQLite {rates['SQLite', 4]:,.0f} puts/s "
          f"({rates['Redis on loopback', 4] / rates['SQLite', 4]:.1f}x)")
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; {multiprocessing.cpu_count()} cpus")


if __name__ == "__main__":
    main()
