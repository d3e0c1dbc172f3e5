"""``llm-replay ls``, ``stats`` and ``audit`` on a cassette of 100,000 recordings: seconds and peak memory.

    python benchmarks/cli_scale.py [--recordings 100000] [--keep DIR]

Builds the cassette once through the store's own ``put`` (a chat request of a few hundred bytes, a ~0.8 KB
JSON answer with usage, five tests owning them), records one run's usage, then runs each command as a
user would (a fresh process, output to /dev/null) and reports wall time and peak RSS against the targets
of issue 15: ls 2 s, stats 2 s, audit 10 s, each within 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"ls": (2.0, 150), "stats": (2.0, 150), "audit": (10.0, 150)}


def build(path: Path, count: int) -> None:
    """A cassette of ``count`` recordings, as pytest would have written them."""
    from llm_replay.model.fingerprint import canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse
    from llm_replay.engine.project import run_ledger
    from llm_replay.model.runs import RunRecord
    from llm_replay.stores.sqlite import SQLiteCache

    cassette = SQLiteCache(path)
    used = {}
    for n in range(count):
        body = {
            "model": "gpt-4o-mini" if n % 3 else "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are a careful assistant who answers in one short paragraph."},
                {"role": "user", "content": f"Question number {n}: what is the capital of country {n % 197}, and why is it there?"},
            ],
            "temperature": 0.2,
        }
        request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", json.dumps(body), "application/json")
        answer = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000 + n, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"The capital of country {n % 197} is its largest city, {'and it grew there for trade and rivers. ' * 6}#{n}"}}],
            "usage": {"prompt_tokens": 40 + n % 50, "completion_tokens": 60 + n % 70, "total_tokens": 100 + n % 120},
        }
        response = RecordedResponse(200, "OK", {"content-type": ["application/json"]}, json.dumps(answer).encode())
        interaction = Interaction.of(request, response, recorded_at=f"2026-11-{1 + n % 28:02d}T10:00:00+00:00", latency_ms=400.0 + n % 900, tests=(f"tests/test_app.py::test_{n % 5}",))
        cassette.put(interaction)
        used[interaction.key] = n % 3
    cassette.close()
    # the run bookkeeping stats reads, where a pytest run in the cassette's folder would keep it
    passes = {f"tests/test_app.py::test_{n}": [] for n in range(5)}
    run_ledger(path, path.parent).record(RunRecord("bench", "2026-11-30T09:00:00+00:00", "2026-11-30T10:00:00+00:00", len(passes)), passes, used)


def measure(argv: list[str], folder: Path) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS in MB and exit code of one command in a fresh process (CPU time
    says what the command costs when the machine is shared)."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *argv], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    peak_kb, user, system = done.stderr.strip().splitlines()[-1].split()
    return seconds, float(user) + float(system), int(peak_kb) // 1024, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the cassette in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="llm-replay-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scale-{args.recordings}.sqlite3"
    if not path.exists():
        started = time.perf_counter()
        build(path, args.recordings)
        print(f"built {args.recordings:,} recordings in {time.perf_counter() - started:.1f} s ({path.stat().st_size / 1e6:.0f} MB): {path}")
    tool = [sys.executable, "-m", "llm_replay"]
    commands = {
        "ls": [*tool, "ls", "--cassette", str(path)],
        "stats": [*tool, "stats", "--cassette", str(path)],
        "audit": [*tool, "audit", str(path)],
    }
    failed = 0
    env_note = f"{os.cpu_count()} cores"
    for name, argv in commands.items():
        seconds, cpu, peak_mb, code = measure(argv, folder)
        limit_s, limit_mb = TARGETS[name]
        ok = code == 0 and seconds <= limit_s and peak_mb <= limit_mb
        failed += not ok
        print(f"{name:6} {seconds:6.2f} s wall  {cpu:6.2f} s CPU  {peak_mb:5d} MB  (target {limit_s:g} s, {limit_mb} MB; exit {code})  {'PASS' if ok else 'MISS'}")
    print(f"({args.recordings:,} recordings, {env_note}, load average {os.getloadavg()[0]:.1f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
