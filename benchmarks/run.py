"""llm_replay against its anchors, side by side in one run: ``python benchmarks/run.py``.

Every LLM call goes through the real ``openai`` SDK (``chat.completions.create``) over an
``httpx2.MockTransport`` that answers canned bytes (~1 KB of JSON): that call is the floor no
replay layer can beat. vcrpy also patches ``MockTransport`` while a cassette is active, so the
replay rows run the very same client; their transport raises if a replay ever reaches it.

Prints one table of medians and ratios, then the targets of issue 7 with PASS/MISS.
Under 5 minutes on 2 cores; ``--quick`` for a smoke run with fewer repeats and smaller sizes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx2
import openai

HERE = Path(__file__).resolve().parent
BASE_URL = "http://llm-replay-bench.invalid/v1"
CHAT_URL = f"{BASE_URL}/chat/completions"
MODEL = "gpt-4o-mini"

ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris. " * 20, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 120, "total_tokens": 134},
    "system_fingerprint": "fp_bench",
}
ANSWER_BYTES = json.dumps(ANSWER).encode()
ANSWER_HEADERS = {"content-type": "application/json"}


def _stream_bytes() -> bytes:
    """The same answer as server-sent events, one chunk per sentence, then usage and [DONE]."""
    head = {key: ANSWER[key] for key in ("id", "created", "model", "system_fingerprint")}
    chunks = [{**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [
        {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "The capital of France is Paris. "}, "finish_reason": None}]}
        for _ in range(20)
    ]
    chunks.append({**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks).encode() + b"data: [DONE]\n\n"


STREAM_BYTES = _stream_bytes()
STREAM_HEADERS = {"content-type": "text/event-stream"}


# -- the floor: the SDK over a transport that answers canned bytes ------------------------------


class CannedTransportHandler:
    """MockTransport's handler: canned JSON or SSE; raises when a replay should never get here."""

    def __init__(self) -> None:
        self.offline = False
        self.last_body = b""

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if self.offline:
            raise AssertionError("a replayed call reached the transport")
        self.last_body = request.read()
        if b'"stream":true' in self.last_body.replace(b" ", b""):
            return httpx2.Response(200, headers=STREAM_HEADERS, content=STREAM_BYTES)
        return httpx2.Response(200, headers=ANSWER_HEADERS, content=ANSWER_BYTES)


HANDLER = CannedTransportHandler()
CLIENT = openai.OpenAI(api_key="sk-bench", base_url=BASE_URL, max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(HANDLER)))


def prompt(i: int) -> str:
    return f"Question number {i}: what is the capital of France?"


def ask(i: int) -> None:
    answer = CLIENT.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt(i)}])
    assert answer.choices[0].message.content == ANSWER["choices"][0]["message"]["content"]


def ask_streaming(i: int) -> None:
    stream = CLIENT.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt(i)}], stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == ANSWER["choices"][0]["message"]["content"]


def request_body(i: int, stream: bool = False) -> bytes:
    """Exactly the bytes the SDK sends for ``prompt(i)``, taken from a real call."""
    HANDLER.offline = False
    (ask_streaming if stream else ask)(i)
    return HANDLER.last_body


# -- timing ------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    median_us: float | None
    ratio: str = ""
    note: str = ""


def per_call_us(batch: Callable[[list[int]], None], indexes: list[int], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    """Median over ``repeats`` batches of the mean time per call; ``setup`` runs untimed before each batch."""
    samples = []
    for _ in range(repeats):
        with (setup() if setup else _nothing()):
            started = time.perf_counter()
            batch(indexes)
            samples.append((time.perf_counter() - started) / len(indexes) * 1e6)
    return statistics.median(samples)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def calls(function: Callable[[int], None]) -> Callable[[list[int]], None]:
    def batch(indexes: list[int]) -> None:
        for i in indexes:
            function(i)

    return batch


def spread(size: int, count: int) -> list[int]:
    """``count`` recorded prompts spread over a cassette of ``size``: distinct when the cassette allows."""
    if size >= count:
        step = size // count
        return [k * step for k in range(count)]
    return [k % size for k in range(count)]


def fmt_time(us: float | None) -> str:
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} µs"


# -- llm_replay cassettes ----------------------------------------------------------------------


def interactions(size: int, stream: bool = False) -> Iterator[Any]:
    """``size`` recordings of ``prompt(i)``, built from the SDK's real request bytes."""
    from llm_replay.fingerprint import canonicalize
    from llm_replay.interaction import Interaction, RecordedResponse

    template = json.loads(request_body(0, stream))
    headers = {name: [value] for name, value in (STREAM_HEADERS if stream else ANSWER_HEADERS).items()}
    response = RecordedResponse(status=200, reason="OK", headers=headers, body=STREAM_BYTES if stream else ANSWER_BYTES)
    for i in range(size):
        body = {**template, "messages": [{"role": "user", "content": prompt(i)}]}
        request = canonicalize("POST", CHAT_URL, json.dumps(body).encode(), "application/json")
        yield Interaction.of(request, response, recorded_at="2026-01-01T00:00:00+00:00")


def sqlite_cassette(path: Path, size: int, stream: bool = False) -> Path:
    from llm_replay.cassettes import SQLiteCache

    cassette = SQLiteCache(path)
    for interaction in interactions(size, stream):
        cassette.put(interaction)
    cassette.close()
    return path


def replay_rows(workdir: Path, sizes: list[int], count: int, repeats: int, floor_us: float, stream_floor_us: float) -> list[Row]:
    from llm_replay import use_cassette
    from llm_replay.cassettes import InMemoryCache
    from llm_replay.engine import activated
    from llm_replay.recorder import Recorder
    from llm_replay.settings import Mode

    rows = []
    for size in sizes:
        path = sqlite_cassette(workdir / f"replay-{size}.sqlite3", size)
        HANDLER.offline = True
        # A fresh read-only cassette for every batch: each call is a cold SQLite lookup when size allows.
        us = per_call_us(calls(ask), spread(size, count), repeats, setup=lambda: use_cassette(path, mode="replay"))
        rows.append(Row(f"llm_replay replay, SQLite, {size:,} interactions", us, f"{us / floor_us:.2f}x floor"))

        memory = InMemoryCache()
        for interaction in interactions(size):
            memory.put(interaction)
        HANDLER.offline = True
        us = per_call_us(calls(ask), spread(size, count), repeats, setup=lambda: activated(Recorder(memory, Mode.REPLAY)))
        rows.append(Row(f"llm_replay replay, in-memory, {size:,} interactions", us, f"{us / floor_us:.2f}x floor"))
        del memory
    size = sizes[min(1, len(sizes) - 1)]
    path = sqlite_cassette(workdir / f"stream-{size}.sqlite3", size, stream=True)
    HANDLER.offline = True
    us = per_call_us(calls(ask_streaming), spread(size, count), repeats, setup=lambda: use_cassette(path, mode="replay"))
    rows.append(Row(f"llm_replay replay streaming, SQLite, {size:,} interactions", us, f"{us / stream_floor_us:.2f}x stream floor"))
    HANDLER.offline = False
    return rows


# -- vcrpy -------------------------------------------------------------------------------------

VCR_MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "body")


def vcr_cassette(path: Path, size: int) -> Path:
    """A YAML cassette of ``size`` interactions written by vcrpy's own serializer."""
    from vcr.request import Request
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    HANDLER.offline = False
    template = json.loads(request_body(0))
    headers = {"content-type": "application/json", "accept": "application/json", "user-agent": "OpenAI/Python bench"}
    requests, responses = [], []
    for i in range(size):
        body = json.dumps({**template, "messages": [{"role": "user", "content": prompt(i)}]}, separators=(",", ":")).encode()
        requests.append(Request("POST", CHAT_URL, body, headers))
        responses.append({"status": {"code": 200, "message": "OK"}, "headers": {"content-type": ["application/json"]}, "body": {"string": ANSWER_BYTES}})
    path.write_text(serialize({"requests": requests, "responses": responses}, yamlserializer))
    return path


def vcrpy_rows(workdir: Path, sizes: list[int], floor_us: float, replay_us: dict[int, float], quick: bool) -> list[Row]:
    import vcr

    rows = []
    for size in sizes:
        path = vcr_cassette(workdir / f"vcr-{size}.yaml", size)

        def load() -> Any:
            return vcr.use_cassette(str(path), record_mode="none", match_on=VCR_MATCH_ON, allow_playback_repeats=True)

        HANDLER.offline = True
        count = 30 if size <= 100 else (3 if quick else 10)
        repeats = 2 if quick else 3
        us = per_call_us(calls(ask), spread(size, count), repeats, setup=load)
        ours = replay_us.get(size)
        note = f"llm_replay is {us / ours:.0f}x faster" if ours else ""
        rows.append(Row(f"vcrpy replay per call, {size:,} interactions (match_on body)", us, f"{us / floor_us:.2f}x floor", note))

        load_samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            with load():
                load_samples.append((time.perf_counter() - started) * 1e6)
        rows.append(Row(f"vcrpy cassette load, {size:,} interactions", statistics.median(load_samples)))
    HANDLER.offline = False
    return rows


# -- pytest sessions ---------------------------------------------------------------------------

SESSION_TESTS = '''
import httpx2
import openai
import pytest

ANSWER = {answer!r}


def handler(request):
    if {offline!r}:
        raise AssertionError("a replayed call reached the transport")
    return httpx2.Response(200, headers={{"content-type": "application/json"}}, content=ANSWER)


client = openai.OpenAI(api_key="sk-bench", base_url="{base_url}", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


{marker}
@pytest.mark.parametrize("i", range({tests}))
def test_call(i{fixture}):
    answer = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Question number %d: what is the capital of France?" % i}}])
    assert answer.choices[0].message.content
'''

TRIVIAL_TESTS = '''
import pytest


@pytest.mark.parametrize("i", range({tests}))
def test_nothing(i{fixture}):
    assert i >= 0
'''

VCR_CONFTEST = f'''
import pytest


@pytest.fixture(scope="session")
def vcr_config():
    return {{"match_on": {list(VCR_MATCH_ON)!r}}}
'''


def _session_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ("CI", "LLM_REPLAY_MODE", "OPENAI_API_KEY", "PYTEST_ADDOPTS")}
    env["PYTHONHASHSEED"] = "0"
    return env


def run_pytest(project: Path, *args: str) -> float:
    """Wall time of one pytest session in a subprocess; fails loudly unless every test passed."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project, env=_session_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(args)} in {project} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def median_session(project: Path, args: list[str], runs: int) -> float:
    run_pytest(project, *args)  # warm-up: bytecode and assertion-rewrite caches, page cache
    return statistics.median(run_pytest(project, *args) for _ in range(runs))


def _project(root: Path, name: str, tests: int, offline: bool, marker: str = "", fixture: str = "", conftest: str = "") -> Path:
    project = root / name
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    source = SESSION_TESTS.format(answer=ANSWER_BYTES, offline=offline, base_url=BASE_URL, marker=marker, tests=tests, fixture=fixture, model=MODEL)
    (project / "test_app.py").write_text(source)
    if conftest:
        (project / "conftest.py").write_text(conftest)
    return project


def session_rows(workdir: Path, tests: int, cassette_size: int, runs: int) -> list[Row]:
    no_plugins = ["-p", "no:llm_replay", "-p", "no:recording"]
    floor = _project(workdir, "floor", tests, offline=False)
    floor_s = median_session(floor, no_plugins, runs)

    ours = _project(workdir, "llm_replay", tests, offline=True, fixture=", llm_cache")
    cassette = ours / "cassettes" / "llm_cache.sqlite3"
    cassette.parent.mkdir()
    sqlite_cassette(cassette, cassette_size)
    ours_s = median_session(ours, ["-p", "no:recording", "--llm-mode=replay"], runs)

    theirs = _project(workdir, "pytest_recording", tests, offline=False, marker="@pytest.mark.vcr", conftest=VCR_CONFTEST)
    run_pytest(theirs, "-p", "no:llm_replay", "--record-mode=once")  # records one YAML cassette per test
    (theirs / "test_app.py").write_text((theirs / "test_app.py").read_text().replace("if False:", "if True:"))
    theirs_s = median_session(theirs, ["-p", "no:llm_replay", "--record-mode=none"], runs)

    net_ours, net_theirs = ours_s - floor_s, theirs_s - floor_s
    return [
        Row(f"pytest session, {tests:,} tests x 1 call, no replay layer (floor)", floor_s * 1e6),
        Row(f"pytest session, llm_replay ({cassette_size:,}-entry SQLite cassette)", ours_s * 1e6, f"{ours_s / floor_s:.2f}x floor"),
        Row(
            "pytest session, pytest-recording (one YAML cassette per test)",
            theirs_s * 1e6,
            f"{theirs_s / floor_s:.2f}x floor",
            f"llm_replay is {theirs_s / ours_s:.1f}x faster; {net_theirs / max(net_ours, 1e-9):.0f}x less time over the floor",
        ),
        Row("  llm_replay added per test (fixture + replayed call)", net_ours / tests * 1e6),
        Row("  pytest-recording added per test", net_theirs / tests * 1e6),
    ]


def fixture_row(workdir: Path, tests: int, runs: int) -> Row:
    """What requesting ``llm_cache`` costs a test that makes no call: setup plus teardown."""
    plain, cached = workdir / "trivial_plain", workdir / "trivial_llm_cache"
    for project, fixture in ((plain, ""), (cached, ", llm_cache")):
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_trivial.py").write_text(TRIVIAL_TESTS.format(tests=tests, fixture=fixture))
    args = ["-p", "no:recording", "--llm-mode=replay"]
    run_pytest(plain, *args), run_pytest(cached, *args)
    # Interleaved, so that a busy neighbour on the machine slows both alike.
    differences = [(run_pytest(cached, *args) - run_pytest(plain, *args)) / tests * 1e6 for _ in range(runs)]
    return Row(f"llm_cache fixture setup + teardown per test ({tests:,} tests, no call)", statistics.median(differences))


def collect_only_row(workdir: Path, runs: int) -> Row:
    """What merely having llm_replay installed costs ``pytest --collect-only`` of a project that ignores it."""
    project = workdir / "small_project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    for n in range(5):
        (project / f"test_module_{n}.py").write_text("".join(f"def test_{k}():\n    assert {k} == {k}\n\n\n" for k in range(10)))
    base = ["--collect-only", "-p", "no:recording"]
    run_pytest(project, *base), run_pytest(project, *base, "-p", "no:llm_replay")
    differences = [(run_pytest(project, *base) - run_pytest(project, *base, "-p", "no:llm_replay")) * 1e6 for _ in range(runs)]
    return Row("pytest --collect-only, small project: added by installed llm_replay", statistics.median(differences))


# -- LangChain (built with the LangChain issue) ------------------------------------------------


def langchain_rows() -> list[Row]:
    try:
        importlib.import_module("llm_replay.langchain")
    except ImportError:
        return [Row("LangChain hit: skipped (llm_replay.langchain not available)", None)]
    if not (HERE / "langchain_hit.py").exists():
        return [Row("LangChain hit: skipped (benchmarks/langchain_hit.py not available)", None)]
    sys.path.insert(0, str(HERE))
    measured = importlib.import_module("langchain_hit").measure()
    return [Row(item["name"], item["median_us"], f"{item['ratio']:.2f}x" if isinstance(item.get("ratio"), (int, float)) else str(item.get("ratio", ""))) for item in measured]


# -- report ------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = ("row", "median", "ratio", "note")
    cells = [header, *[(row.name, fmt_time(row.median_us), row.ratio, row.note) for row in rows]]
    widths = [max(len(cell[column]) for cell in cells) for column in range(4)]
    lines = [" | ".join(cell[column].ljust(widths[column]) for column in range(4)).rstrip() for cell in cells]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats: a smoke run, not a measurement")
    options = parser.parse_args()
    quick = options.quick
    sizes = [10, 1_000] if quick else [10, 1_000, 10_000, 100_000]
    count, repeats = (100, 3) if quick else (300, 7)
    session_tests, session_cassette, session_runs = (200, 1_000, 1) if quick else (1_000, 10_000, 3)

    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="llm_replay_bench_") as temp:
        workdir = Path(temp)
        HANDLER.offline = False
        for _ in range(50):
            ask(0), ask_streaming(0)  # warm the SDK's caches before anything is timed
        floor_us = per_call_us(calls(ask), spread(size=10**9, count=count), repeats)
        stream_floor_us = per_call_us(calls(ask_streaming), spread(size=10**9, count=count), repeats)
        rows.append(Row("floor: openai SDK over httpx2.MockTransport, ~1 KB JSON", floor_us, "1.00x floor"))
        rows.append(Row("floor: the same, streaming (22 SSE chunks)", stream_floor_us, "1.00x stream floor"))
        replayed = replay_rows(workdir, sizes, count, repeats, floor_us, stream_floor_us)
        rows += replayed
        replay_us = {size: row.median_us for size, row in zip(sizes, replayed[::2])}
        rows += vcrpy_rows(workdir, [10, 1_000], floor_us, replay_us, quick)
        rows += session_rows(workdir, session_tests, session_cassette, session_runs)
        rows.append(fixture_row(workdir, 2 * session_tests, session_runs))
        rows.append(collect_only_row(workdir, 3 if quick else 9))
        rows += langchain_rows()
    print(table(rows))
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; python {sys.version.split()[0]}, openai {openai.__version__}, {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
