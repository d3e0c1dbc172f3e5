"""Bytes ``llm-replay audit`` reads per second on a cassette of N recordings (default 100,000).

    python benchmarks/audit_speed.py [N]

Builds the cassette in a temporary folder (chat requests and answers of a realistic size, one test id each),
then times the audit command on it end to end: every cell, the raw file's free space, the side files.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.sqlite import SQLiteCache


def build(path: Path, count: int) -> None:
    """A cassette of ``count`` recordings: the first through SQLiteCache's own ``put`` (so the file, its schema and
    its meta row are the store's), the rest in one transaction beside it."""
    rows = []
    for index in range(count):
        request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", json.dumps({
            "model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a terse assistant."},
                                                 {"role": "user", "content": f"Summarise ticket {index}: the printer on floor {index % 9} jams."}]}),
            "application/json")
        body = json.dumps({"id": f"chatcmpl-{index}", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": f"Ticket {index}: printer jam, floor {index % 9}."},
                                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}})
        headers = json.dumps({"content-type": ["application/json"], "x-request-id": [f"req_{index:032x}"], "openai-processing-ms": ["312"]})
        rows.append((request.fingerprint, 0, request.to_json(), 200, "OK", headers, body, "2025-01-01T00:00:00+00:00", "gpt-4o-mini",
                     31, 12, 312.0, json.dumps([f"tests/test_tickets.py::test_summary[{index}]"])))
    # The store makes its file and tables at its first write, not when opened (a run that records nothing leaves
    # no file): opening and closing it alone left nothing to insert into ("no such table: interactions").
    first = rows[0]
    cassette = SQLiteCache(path)
    cassette.put(Interaction(fingerprint=first[0], occurrence=first[1], request_json=first[2],
                             response=RecordedResponse(first[3], first[4], json.loads(first[5]), first[6].encode()),
                             recorded_at=first[7], latency_ms=first[11], tests=tuple(json.loads(first[12]))))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows[1:])


def run(count: int) -> str:
    """Build a cassette of ``count`` recordings in a temporary folder and time ``llm-replay audit`` on it: the result line."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "llm_cache.sqlite3"
        build(path, count)
        size = path.stat().st_size
        started = time.perf_counter()
        status = main(["audit", str(path)])
        elapsed = time.perf_counter() - started
    return f"{count} recordings, {size / 1e6:.1f} MB file: audit took {elapsed:.1f} s, {size / elapsed / 1e6:.1f} MB/s (exit {status})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=100_000, help="recordings in the cassette (default 100,000)")
    print(run(max(1, parser.parse_args().count)))
