"""Memory of a pytest session as its replays grow: ``python benchmarks/memory.py``.

Each row is one fresh ``pytest --llm-mode=replay`` process (the real openai SDK over an ``httpx2.MockTransport``,
as in run.py) and its peak RSS. 100 tests replaying 10 times each are the baseline; 100 tests replaying 1,000
times each are 100,000 replays; the difference is what replays cost in memory (issue 10: under 50 MB). Then
tests that each replay their own 50 MB answer: if answers were kept after their tests, four would cost
about 150 MB more than one.

``--source DIR`` runs another checkout of llm_replay (e.g. ``git archive main | tar -x -C /tmp/main``) for a
before/after figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFTEST = '''
import json
import os

import httpx2
import openai
import pytest

SMALL = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris. " * 100}, "finish_reason": "stop"}]}).encode()


def handler(request):
    if os.environ.get("OFFLINE"):
        raise AssertionError("a replay reached the transport")
    big = b"big" in request.read()
    content = SMALL.replace(b"Paris. " * 100, b"Paris. " * (50 * 1024 * 1024 // 7)) if big else SMALL  # made only while recording
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=content)


CLIENT = openai.OpenAI(api_key="sk-bench", base_url="http://bench.invalid/v1", max_retries=0,
                       http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


@pytest.fixture
def ask(llm_cache):
    def ask(prompt):
        return CLIENT.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    return ask
'''
TESTS = '''
import os

import pytest



@pytest.mark.parametrize("n", range(100))
def test_replays(ask, n):
    for i in range(int(os.environ["REPLAYS"])):
        ask(f"question {i % 10}")


@pytest.mark.parametrize("n", range(4))
def test_big_answer(ask, n):
    assert len(ask(f"big {n}").choices[0].message.content) > 50 * 1000 * 1000
'''


def session(project: Path, source: str | None, mode: str, replays: int, selection: str) -> int:
    """Peak RSS (KiB) of one pytest process running the tests ``selection`` picks, each replaying ``replays`` times."""
    env = {**os.environ, "REPLAYS": str(replays), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    if source:
        env["PYTHONPATH"] = source
    if mode == "replay":
        env["OFFLINE"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "llm_replay.pytest_plugin.plugin", "-p", "no:cacheprovider", f"--llm-mode={mode}", "-k", selection],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"the session failed:\n{out.decode()}")
    return usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="a folder holding the llm_replay package to measure (default: the installed one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llm-replay-memory-") as folder:
        project = Path(folder)
        (project / "pytest.ini").write_text("[pytest]\nllm_freeze_time = false\n")
        (project / "conftest.py").write_text(CONFTEST)
        (project / "test_memory.py").write_text(TESTS)
        session(project, args.source, "record", 10, "")
        rows = [
            ("100 tests x 10 replays (1,000 replays)", session(project, args.source, "replay", 10, "test_replays")),
            ("100 tests x 1,000 replays (100,000 replays)", session(project, args.source, "replay", 1000, "test_replays")),
            ("1 test replaying a 50 MB answer", session(project, args.source, "replay", 0, "test_big_answer and 0")),
            ("4 tests each replaying a 50 MB answer", session(project, args.source, "replay", 0, "test_big_answer")),
        ]
    print(f"llm_replay from {args.source or 'the installed package'}; peak RSS of each pytest session:")
    for name, kib in rows:
        print(f"  {name:<48} {kib / 1024:8.1f} MB")
    print(f"  100,000 replays add {(rows[1][1] - rows[0][1]) / 1024:.1f} MB over 1,000; four 50 MB answers add {(rows[3][1] - rows[2][1]) / 1024:.1f} MB over one")


if __name__ == "__main__":
    main()
