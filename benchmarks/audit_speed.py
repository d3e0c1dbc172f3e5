"""Bytes ``llm-replay audit`` reads per second on a cassette of N recordings (default 100,000).

    python benchmarks/audit_speed.py [N]

Builds the cassette in a temporary folder (chat requests and answers of a realistic size, one test id each),
then times the audit command on it end to end: every cell, the raw file's free space, the side files.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.stores.sqlite import SQLiteCache


def build(path: Path, count: int) -> None:
    """A cassette of ``count`` recordings, written in one transaction (the schema from SQLiteCache itself)."""
    SQLiteCache(path).close()
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
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "llm_cache.sqlite3"
        build(path, count)
        size = path.stat().st_size
        started = time.perf_counter()
        status = main(["audit", str(path)])
        elapsed = time.perf_counter() - started
        print(f"{count} recordings, {size / 1e6:.1f} MB file: audit took {elapsed:.1f} s, {size / elapsed / 1e6:.1f} MB/s (exit {status})")
