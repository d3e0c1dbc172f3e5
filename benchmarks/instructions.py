"""What llm_replay adds per test, counted in CPU instructions: ``python benchmarks/instructions.py`` (needs valgrind).

run.py's session rows are CPU seconds, and seconds move with the machine: on a shared 2-core VM the same floor
session varies by ±15% from one run to the next, and a slower machine scales every figure. Instructions do not:
under valgrind's cachegrind a session executes the same count, run after run, to within ~0.1%. Four sessions of
run.py's project (one replayed chat call per test, a cassette of 10,000 recordings), the floor and llm_replay with
1 test and with ``--tests`` tests, give what llm_replay adds once per session and what it adds per test; run.py's
sizes (1,000 and 10,000 tests) follow from those two. Each figure is also shown against the floor's own cost per
test (machine-free, like run.py's "x floor"), and in µs at this machine's speed (the floor's CPU seconds over its
instructions).

A before/after of a change: run it on both commits; the counts differ only by what the change did.
About 3 minutes on 2 cores (each session runs ~15x slower under valgrind).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import run

SIZES = (1_000, 10_000)


@dataclass(frozen=True)
class Counts:
    """Instructions of the four sessions: the floor and llm_replay, with one test and with ``tests`` tests."""

    tests: int
    floor_one: int
    ours_one: int
    floor_many: int
    ours_many: int

    @property
    def once(self) -> float:
        """What llm_replay adds once per session (imports, the first activation, the end of the run)."""
        return self.ours_one - self.floor_one

    @property
    def per_test(self) -> float:
        """What llm_replay adds for each further test."""
        return (self.ours_many - self.floor_many - self.once) / (self.tests - 1)

    @property
    def floor_per_test(self) -> float:
        return (self.floor_many - self.floor_one) / (self.tests - 1)

    def added_per_test(self, size: int) -> float:
        """Added per test in a session of ``size`` tests: the once-paid part shared by all of them."""
        return self.per_test + self.once / size

    def floor_session(self, size: int) -> float:
        return self.floor_one + self.floor_per_test * (size - 1)


def instructions(session: run.Session) -> int:
    """The instructions one pytest session executes under cachegrind (no cache simulation: counting only)."""
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.args]
    result = subprocess.run(command, cwd=session.project, env=run._session_env(session.offline), capture_output=True, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command)} in {session.project} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def sessions(workdir: Path, tests: int) -> list[run.Session]:
    """The floor and llm_replay with one test, then with ``tests`` tests; each run once without valgrind (bytecode
    caches written, as run.py's warm-up does)."""
    one = run._sessions(workdir / "one", 1, 10_000, anchors=False)
    many = run._sessions(workdir / "many", tests, 10_000, anchors=False)
    plan = [one["floor"], one["llm_replay"], many["floor"], many["llm_replay"]]
    for session in plan:
        run.run_pytest(session.project, *session.args, offline=session.offline)
    return plan


def seconds_per_instruction(session: run.Session, counted: int, runs: int = 5) -> float:
    """This machine's speed on a session of ``counted`` instructions: its fastest CPU time of ``runs`` over the count."""
    return min(run.run_pytest(session.project, *session.args, offline=session.offline) for _ in range(runs)) / counted


def report(counts: Counts, speed: float) -> list[str]:
    """The table: once per session, per test, and per test at run.py's sizes, in instructions, µs and floor shares."""
    lines = [
        f"{'':44}| {'instructions':>14} | {'µs here':>9} | share of the floor's cost per test",
        f"{'llm_replay, once per session':44}| {counts.once / 1e6:>12.1f} M | {counts.once * speed * 1e6:>9.0f} |",
        f"{'llm_replay, each further test':44}| {counts.per_test / 1e6:>12.3f} M | {counts.per_test * speed * 1e6:>9.0f} | {counts.per_test / counts.floor_per_test:.1%}",
        f"{'floor, each further test':44}| {counts.floor_per_test / 1e6:>12.3f} M | {counts.floor_per_test * speed * 1e6:>9.0f} |",
    ]
    for size in SIZES:
        added = counts.added_per_test(size)
        share = added * size / counts.floor_session(size)
        lines.append(f"{f'added per test, {size:,} tests':44}| {added / 1e6:>12.3f} M | {added * speed * 1e6:>9.0f} | {1 + share:.3f}x the floor session")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=200, help="the larger session's tests (default 200)")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("benchmarks/instructions.py counts instructions with valgrind, which is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="llm_replay_instructions_") as temp:
        plan = sessions(Path(temp), options.tests)
        with ThreadPoolExecutor(max_workers=2) as pool:  # valgrind runs one thread: two sessions at a time
            counts = Counts(options.tests, *pool.map(instructions, plan))
        speed = seconds_per_instruction(plan[2], counts.floor_many)
    print("\n".join(report(counts, speed)))
    print(f"\nsessions of 1 and {options.tests} tests; instructions: floor {counts.floor_one:,} / {counts.floor_many:,}, llm_replay {counts.ours_one:,} / {counts.ours_many:,}")


if __name__ == "__main__":
    main()
