"""llm_replay against its anchors, side by side in one run: ``python benchmarks/run.py``.

Every LLM call goes through the real ``openai`` SDK (``chat.completions.create``) over an
``httpx2.MockTransport`` that answers canned bytes (~1 KB of JSON): that call is the floor no
replay layer can beat. vcrpy also patches ``MockTransport`` while a cassette is active, so the
replay rows run the very same client; their transport raises if a replay ever reaches it.

The anchors (the ``bench`` extra, in a venv of its own): vcrpy, pytest-recording and cassetter. Whole pytest
sessions run the same test file with one tool at a time, each beside a session with no plugin (the floor) started at
the same moment, so that both meet the same machine.

Prints one table of medians and ratios, then the targets of issues 7 and 16 with PASS/MISS (UNSURE where the
target lies within the median's confidence interval over the rounds).
About 10 minutes on 2 cores; ``--quick`` for a smoke run with fewer repeats and smaller sizes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, NamedTuple

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


def new_client() -> openai.OpenAI:
    """A client like CLIENT; cassetter intercepts a custom transport only in clients built inside its cassette."""
    return openai.OpenAI(api_key="sk-bench", base_url=BASE_URL, max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(HANDLER)))


def ask(i: int, client: openai.OpenAI = CLIENT) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt(i)}])
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
    """One line of the table: a median in µs (None when skipped), a ratio and a note, already worded."""

    name: str
    median_us: float | None
    ratio: str = ""
    note: str = ""
    shown: str | None = None  # instead of the median, when the median alone would mislead (noise)
    low_us: float = 0.0  # the median's confidence interval over the rounds, where the row is a difference of rounds
    high_us: float = 0.0
    confidence: float = 1.0  # that the interval holds the true median


# CPU time of this process, not wall time: on a machine shared with other work, wall time measures
# the neighbours. Everything timed here is single-threaded, so on an idle machine the two agree.
clock = time.process_time


def per_call_us(batch: Callable[[list[int]], None], indexes: list[int], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    """Median over ``repeats`` batches of the mean CPU time per call; ``setup`` runs untimed before each batch."""
    samples = []
    for _ in range(repeats):
        with setup() if setup else nullcontext():
            started = clock()
            batch(indexes)
            samples.append((clock() - started) / len(indexes) * 1e6)
    return statistics.median(samples)


def paired_us(replay: Callable[[int], None], floor: Callable[[int], None], indexes: list[int], repeats: int, setup: Callable[[], Any]) -> tuple[float, float]:
    """Replay's median CPU µs per call, and the median ratio to a floor batch timed just before each replay batch.

    Pairing keeps the ratio honest when the machine's speed drifts between rows.
    """
    samples, ratios = [], []
    for _ in range(repeats):
        HANDLER.offline = False
        floor_us = per_call_us(calls(floor), indexes, 1)
        HANDLER.offline = True  # from here on, reaching the transport is an error
        replay_us = per_call_us(calls(replay), indexes, 1, setup)
        samples.append(replay_us)
        ratios.append(replay_us / floor_us)
    HANDLER.offline = False
    return statistics.median(samples), statistics.median(ratios)


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
    if us < 0:
        return f"-{fmt_time(-us)}"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} µs"


# -- llm_replay cassettes ----------------------------------------------------------------------


def interactions(size: int, stream: bool = False, owner: str | None = None, owned: int = 0) -> Iterator[Any]:
    """``size`` recordings of ``prompt(i)``, built from the SDK's real request bytes; ``owner``: the test id
    pattern (``{i}`` for the number) of the test that recorded each of the first ``owned``, as a record run
    stores it (the rest have no owner)."""
    from llm_replay.model.fingerprint import canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse

    template = json.loads(request_body(0, stream))
    headers = {name: [value] for name, value in (STREAM_HEADERS if stream else ANSWER_HEADERS).items()}
    response = RecordedResponse(status=200, reason="OK", headers=headers, body=STREAM_BYTES if stream else ANSWER_BYTES)
    for i in range(size):
        body = {**template, "messages": [{"role": "user", "content": prompt(i)}]}
        request = canonicalize("POST", CHAT_URL, json.dumps(body).encode(), "application/json")
        tests = (owner.format(i=i),) if owner and i < owned else ()
        yield Interaction.of(request, response, recorded_at="2026-01-01T00:00:00+00:00", tests=tests)


def sqlite_cassette(path: Path, size: int, stream: bool = False, owner: str | None = None, owned: int = 0) -> Path:
    from llm_replay.stores.sqlite import SQLiteCache

    cassette = SQLiteCache(path)
    for interaction in interactions(size, stream, owner, owned):
        cassette.put(interaction)
    cassette.close()
    return path


def replay_rows(workdir: Path, sizes: list[int], count: int, repeats: int) -> list[Row]:
    from llm_replay import use_cassette
    from llm_replay.engine.recorder import Recorder
    from llm_replay.engine.settings import Mode
    from llm_replay.layers.activation import activated
    from llm_replay.stores.memory import InMemoryCache

    rows = []
    for size in sizes:
        path = sqlite_cassette(workdir / f"replay-{size}.sqlite3", size)
        # A fresh read-only cassette for every batch: each call is a cold SQLite lookup when size allows.
        us, ratio = paired_us(ask, ask, spread(size, count), repeats, setup=lambda: use_cassette(path, mode="replay"))
        rows.append(Row(f"llm_replay replay, SQLite, {size:,} interactions", us, f"{ratio:.2f}x floor"))

        memory = InMemoryCache()
        for interaction in interactions(size):
            memory.put(interaction)
        us, ratio = paired_us(ask, ask, spread(size, count), repeats, setup=lambda: activated(Recorder(memory, Mode.REPLAY)))
        rows.append(Row(f"llm_replay replay, in-memory, {size:,} interactions", us, f"{ratio:.2f}x floor"))
        del memory
    size = sizes[min(1, len(sizes) - 1)]
    path = sqlite_cassette(workdir / f"stream-{size}.sqlite3", size, stream=True)
    us, ratio = paired_us(ask_streaming, ask_streaming, spread(size, count), repeats, setup=lambda: use_cassette(path, mode="replay"))
    rows.append(Row(f"llm_replay replay streaming, SQLite, {size:,} interactions", us, f"{ratio:.2f}x stream floor"))
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
            started = clock()
            with load():
                load_samples.append((clock() - started) * 1e6)
        rows.append(Row(f"vcrpy cassette load, {size:,} interactions", statistics.median(load_samples)))
    HANDLER.offline = False
    return rows


# -- cassetter -------------------------------------------------------------------------------

CASSETTER_MATCH_ON = ["method", "uri", "body"]


def pytest_recording_missing() -> str | None:
    """Why pytest-recording cannot be measured here, or None when it can (without it ``--record-mode`` is unknown)."""
    try:
        importlib.import_module("pytest_recording")
    except ImportError as error:
        return f"pytest-recording is not installed ({error}); pip install -e '.[bench]' in a venv of its own"
    return None


def cassetter_missing() -> str | None:
    """Why cassetter cannot be measured here, or None when it can."""
    try:
        importlib.import_module("cassetter")
    except ImportError as error:
        return f"cassetter is not installed ({error}); pip install -e '.[bench]' in a venv of its own"
    return None


def cassetter_rows(workdir: Path, sizes: list[int], count: int, repeats: int) -> list[Row]:
    """cassetter (Rust core) replaying the same calls from its YAML cassette, paired with the floor like ours."""
    missing = cassetter_missing()
    if missing:
        return [Row(f"cassetter replay per call: NOT MEASURED, {missing}", None)]
    import cassetter

    rows = []
    for size in sizes:
        path = workdir / f"cassetter-{size}.yaml"
        HANDLER.offline = False
        with cassetter.use_cassette(path, record_mode="all", match_on=CASSETTER_MATCH_ON):
            client = new_client()
            for i in sorted(set(spread(size, count))):
                ask(i, client)
        built: dict[str, openai.OpenAI] = {}

        @contextmanager
        def replaying() -> Iterator[None]:
            with cassetter.use_cassette(path, record_mode="none", match_on=CASSETTER_MATCH_ON):
                built["client"] = new_client()
                yield

        us, ratio = paired_us(lambda i: ask(i, built["client"]), ask, spread(size, count), repeats, setup=replaying)
        rows.append(Row(f"cassetter replay per call, {size:,} interactions (match_on body)", us, f"{ratio:.2f}x floor"))
    return rows


# -- pytest sessions ---------------------------------------------------------------------------

SESSION_TESTS = """
import os

import httpx2
import openai
import pytest

ANSWER = {answer!r}
OFFLINE = os.environ.get("BENCH_OFFLINE") == "1"


def handler(request):
    if OFFLINE:
        raise AssertionError("a replayed call reached the transport")
    return httpx2.Response(200, headers={{"content-type": "application/json"}}, content=ANSWER)


@pytest.mark.llm_cache
@pytest.mark.vcr
@pytest.mark.parametrize("i", range({tests}))
def test_call(i):
    # Built in the test: cassetter intercepts a custom transport only in clients built inside its cassette.
    client = openai.OpenAI(api_key="sk-bench", base_url="{base_url}", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    answer = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Question number %d: what is the capital of France?" % i}}])
    assert answer.choices[0].message.content
"""

# Every session runs this same file; the markers are registered so that a session without the plugin is quiet.
SESSION_INI = "[pytest]\nmarkers =\n    llm_cache: llm_replay\n    vcr: pytest-recording and cassetter\n"

TRIVIAL_TESTS = """
import pytest


@pytest.mark.parametrize("i", range({tests}))
def test_nothing(i{fixture}):
    assert i >= 0
"""

VCR_CONFTEST = """
import pytest


@pytest.fixture(scope="module")
def vcr_config():
    return {{"match_on": {match_on!r}}}
"""

# The session plugins; each session loads at most one (pytest-recording and cassetter both add --record-mode).
PLUGINS = ("llm_replay", "recording", "cassetter")


def only(plugin: str | None) -> list[str]:
    """Arguments that disable every measured plugin but ``plugin``."""
    return [arg for other in PLUGINS if other != plugin for arg in ("-p", f"no:{other}")]


# What a user's shell has: bytecode caches written (PYTHONDONTWRITEBYTECODE would make every run
# recompile and assertion-rewrite every plugin), no CI flag, no mode, no key.
_DROPPED_VARIABLES = ("CI", "LLM_REPLAY_MODE", "OPENAI_API_KEY", "PYTEST_ADDOPTS", "PYTHONDONTWRITEBYTECODE")


def _session_env(offline: bool = False) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _DROPPED_VARIABLES}
    env["PYTHONHASHSEED"] = "0"
    env["BENCH_OFFLINE"] = "1" if offline else "0"
    return env


class Started(NamedTuple):
    """A pytest session running in a subprocess, its output going to a temporary file (which no wait can block on)."""

    process: subprocess.Popen
    output: IO[str]
    project: Path


def start_pytest(project: Path, *args: str, offline: bool = False) -> Started:
    """One pytest session, started; ``cpu_seconds`` waits for it. ``offline``: the tests' transport raises, so a
    session passes only if every call was replayed."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    output = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command, cwd=project, env=_session_env(offline), stdout=output, stderr=subprocess.STDOUT)
    return Started(process, output, project)


def cpu_seconds(started: Started) -> float:
    """CPU seconds (user + system) of a started session, its own alone (``os.wait4``: two sessions running at once
    are told apart); fails loudly unless every test passed.

    CPU time, not wall time: on a machine shared with other work, wall time measures the neighbours.
    A pytest session is one thread, so on an idle machine the two agree.
    """
    process = started.process
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    with started.output as output:
        if process.returncode != 0:
            output.seek(0)
            raise RuntimeError(f"{' '.join(process.args)} in {started.project} failed:\n{output.read()[-6000:]}")  # type: ignore[arg-type]
    return usage.ru_utime + usage.ru_stime


def run_pytest(project: Path, *args: str, offline: bool = False) -> float:
    """CPU seconds of one pytest session (see ``cpu_seconds``)."""
    return cpu_seconds(start_pytest(project, *args, offline=offline))


def run_pair(first: Session, second: Session, swap: bool = False) -> tuple[float, float]:
    """CPU seconds of two sessions started at the same moment, one per core (``swap`` starts ``second`` first).

    Paired so, both meet the same machine: this VM's speed drifts by a quarter within minutes (the same 10,000-test
    floor session took 14.9 s and 18.8 s 45 minutes apart), and sessions run one after the other turned that drift
    into most of a per-test difference's noise. What slows one half of a pair (a neighbour, the shared cache) slows
    the other alike.
    """
    order = (second, first) if swap else (first, second)
    started = [start_pytest(session.project, *session.args, offline=session.offline) for session in order]
    seconds = [cpu_seconds(process) for process in started]
    return (seconds[1], seconds[0]) if swap else (seconds[0], seconds[1])


def _session_project(project: Path, tests: int, conftest: str = "") -> Path:
    project.mkdir(parents=True)
    (project / "pytest.ini").write_text(SESSION_INI)
    (project / "test_app.py").write_text(SESSION_TESTS.format(answer=ANSWER_BYTES, base_url=BASE_URL, tests=tests, model=MODEL))
    if conftest:
        (project / "conftest.py").write_text(conftest)
    return project


@dataclass
class Session:
    """One way to run the same tests: which project folder, which arguments, and whether calls must replay."""

    project: Path
    args: list[str]
    offline: bool


def _sessions(root: Path, tests: int, cassette_size: int, anchors: bool) -> dict[str, Session]:
    """The floor (no plugin) and llm_replay over one project; with ``anchors``, pytest-recording and cassetter
    over copies of the same tests, each recorded once first (one YAML cassette per test)."""
    ours = _session_project(root / "llm_replay", tests)
    # each test's recording owned by it, as a record run leaves them; the other recordings have no owner
    sqlite_cassette(ours / "cassettes" / "llm_cache.sqlite3", max(cassette_size, tests), owner="test_app.py::test_call[{i}]", owned=tests)
    sessions = {
        "floor": Session(ours, only(None), offline=False),
        "llm_replay": Session(ours, [*only("llm_replay"), "--llm-mode=replay"], offline=True),
    }
    if not anchors:
        return sessions
    anchors_at = {}
    if pytest_recording_missing() is None:
        anchors_at["pytest-recording"] = ("recording", VCR_MATCH_ON)
    if cassetter_missing() is None:
        anchors_at["cassetter"] = ("cassetter", CASSETTER_MATCH_ON)
    for name, (plugin, match_on) in anchors_at.items():
        project = _session_project(root / plugin, tests, VCR_CONFTEST.format(match_on=list(match_on)))
        run_pytest(project, *only(plugin), "--record-mode=once")
        sessions[name] = Session(project, [*only(plugin), "--record-mode=none"], offline=True)
    return sessions


def median_interval(samples: list[float]) -> tuple[float, float, float]:
    """Where the true median lies, from the rounds alone (order statistics, no assumption about the noise's shape):
    the narrowest interval from the k-th smallest to the k-th largest round that holds it with 95% confidence, else
    (fewer than 6 rounds) the whole range; and that confidence. Unlike half the range, it narrows as rounds are added."""
    ordered = sorted(samples)
    n = len(ordered)

    def confidence(k: int) -> float:  # that the median lies between the k-th smallest and the k-th largest
        return 1 - 2 * sum(math.comb(n, below) for below in range(k)) / 2**n

    k = max((k for k in range(1, (n + 1) // 2 + 1) if confidence(k) >= 0.95), default=1)
    return ordered[k - 1], ordered[n - k], confidence(k)


def within_noise(samples: list[float]) -> bool:
    """Whether a difference's median is not known to differ from zero: its interval holds zero."""
    low, high, _ = median_interval(samples)
    return low <= 0 <= high


def added_row(name: str, samples: list[float]) -> Row:
    """A time added over a floor, per round; never shown as a negative or a figure its interval does not support."""
    low, high, confidence = median_interval(samples)
    rounds = f"{confidence:.0%} interval {fmt_time(low)} to {fmt_time(high)} over {len(samples)} rounds"
    median = statistics.median(samples)
    if within_noise(samples):
        return Row(name, max(median, 0.0), note=f"within noise ({rounds})", shown="within noise", low_us=low, high_us=high, confidence=confidence)
    if median < 0:
        return Row(name, 0.0, note=f"{fmt_time(-median)} less than the floor ({rounds})", shown="below floor", low_us=low, high_us=high, confidence=confidence)
    return Row(name, median, note=rounds, low_us=low, high_us=high, confidence=confidence)


def how_much_more(ours: list[float], theirs: list[float], name: str) -> str:
    """How many times llm_replay's added time ``name`` adds, worded; no ratio of noise."""
    if within_noise(ours) or statistics.median(ours) < 0:
        return f"llm_replay's added time is within noise; {name} adds {fmt_time(statistics.median(theirs))}"
    if within_noise(theirs) or statistics.median(theirs) < 0:
        return f"{name}'s added time is within noise"
    ratio = statistics.median(theirs) / statistics.median(ours)
    return f"{name} adds {ratio:.1f}x as much as llm_replay" if ratio >= 1 else f"llm_replay adds {1 / ratio:.1f}x as much as {name}"


def session_rows(workdir: Path, tests: int, cassette_size: int, rounds: int, anchors: bool) -> list[Row]:
    """Whole pytest sessions of ``tests`` tests, one replayed call each: in every round each tool's session runs at
    the same moment as a floor session of its own (``run_pair``), and its added time is taken against that floor."""
    sessions = _sessions(workdir / f"sessions-{tests}", tests, cassette_size, anchors)
    for session in sessions.values():  # warm-up: bytecode and assertion-rewrite caches, page cache
        run_pytest(session.project, *session.args, offline=session.offline)
    floor = sessions.pop("floor")
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    floors: dict[str, list[float]] = {name: [] for name in sessions}
    for round_number in range(rounds):
        for name, session in sessions.items():
            floor_seconds, seconds = run_pair(floor, session, swap=round_number % 2 == 1)
            floors[name].append(floor_seconds)
            cpu[name].append(seconds)
    added = {name: [(seconds - floor_s) / tests * 1e6 for seconds, floor_s in zip(samples, floors[name])] for name, samples in cpu.items()}
    every_floor = [seconds for samples in floors.values() for seconds in samples]
    rows = [Row(f"pytest session CPU, {tests:,} tests x 1 call, no plugin (floor)", statistics.median(every_floor) * 1e6, "1.00x floor")]
    for name, samples in cpu.items():
        whole = statistics.median(samples) / statistics.median(floors[name])
        rows.append(Row(f"pytest session CPU, {tests:,} tests, {name}", statistics.median(samples) * 1e6, f"{whole:.2f}x floor"))
    for name, samples in added.items():
        row = added_row(f"  {name}: added per test over the floor ({tests:,} tests)", samples)
        if name != "llm_replay":
            row.note += "; " + how_much_more(added["llm_replay"], samples, name)
        rows.append(row)
    if anchors and pytest_recording_missing():
        rows.append(Row(f"pytest session CPU, {tests:,} tests, pytest-recording: NOT MEASURED, {pytest_recording_missing()}", None))
    return rows


PHASE_TIMER = '''
import json
import time

import pytest

PHASES = {"setup": [], "teardown": []}


# CPU time, like every session row: on a shared machine, wall time measures the neighbours.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    started = time.process_time()
    try:
        return (yield)
    finally:
        PHASES["setup"].append(time.process_time() - started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    started = time.process_time()
    try:
        return (yield)
    finally:
        PHASES["teardown"].append(time.process_time() - started)


def pytest_sessionfinish(session):
    with open("phases.json", "w") as handle:
        json.dump(PHASES, handle)
'''


def _phases_us(sessions: tuple[Session, Session], swap: bool) -> tuple[float, float]:
    """Each session's median test setup + teardown, timed by pytest hooks inside it; the two run at once
    (``run_pair``), each in a project of its own for its hooks' file."""
    run_pair(*sessions, swap=swap)
    medians = []
    for session in sessions:
        phases = json.loads((session.project / "phases.json").read_text())
        medians.append(statistics.median(setup + teardown for setup, teardown in zip(phases["setup"], phases["teardown"])) * 1e6)
    return medians[0], medians[1]


def fixture_rows(workdir: Path, tests: int, rounds: int) -> list[Row]:
    """What ``llm_cache`` adds to a test's setup + teardown when the test makes no call, and what the installed
    plugin adds to a test that does not use it; each round's pairs run at once."""
    with_plugin, without = [*only("llm_replay"), "--llm-mode=replay"], only(None)
    sessions = {}
    for name, fixture, args in (("plain", "", with_plugin), ("llm_cache", ", llm_cache", with_plugin), ("no_plugin", "", without)):
        project = workdir / f"trivial_{name}"
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "conftest.py").write_text(PHASE_TIMER)
        (project / "test_trivial.py").write_text(TRIVIAL_TESTS.format(tests=tests, fixture=fixture))
        sessions[name] = Session(project, args, offline=False)
        run_pytest(project, *args)  # warm-up
    fixture, installed = [], []
    for round_number in range(rounds):
        plain_us, cached_us = _phases_us((sessions["plain"], sessions["llm_cache"]), swap=round_number % 2 == 1)
        fixture.append(cached_us - plain_us)
        bare_us, plain_us = _phases_us((sessions["no_plugin"], sessions["plain"]), swap=round_number % 2 == 1)
        installed.append(plain_us - bare_us)
    return [
        added_row(f"llm_cache fixture setup + teardown, added per test ({tests:,} tests, no call)", fixture),
        added_row(f"  a test without llm_cache: setup + teardown added by the installed plugin ({tests:,} tests)", installed),
    ]


def collect_only_row(workdir: Path, runs: int) -> Row:
    """What merely having llm_replay installed costs ``pytest --collect-only`` of a project that ignores it."""
    project = workdir / "small_project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    for n in range(5):
        (project / f"test_module_{n}.py").write_text("".join(f"def test_{k}():\n    assert {k} == {k}\n\n\n" for k in range(10)))
    ours, none = Session(project, ["--collect-only", *only("llm_replay")], False), Session(project, ["--collect-only", *only(None)], False)
    run_pytest(project, *ours.args), run_pytest(project, *none.args)
    pairs = (run_pair(none, ours, swap=run_number % 2 == 1) for run_number in range(runs))
    differences = [(ours_s - none_s) * 1e6 for none_s, ours_s in pairs]
    # a whole session's CPU time varies by more than this costs: worded as noise when its pairs disagree
    return added_row(f"pytest --collect-only, 50 tests: CPU added by installed llm_replay ({runs} pairs)", differences)


def plugin_import_row(runs: int) -> Row:
    """The same cost seen from inside, precise where the pairs above are noisy: the CPU time of importing the
    plugin after pytest, in a fresh interpreter; its hooks then only read options and build a small object."""
    code = "import time, pytest; started = time.process_time(); import llm_replay.pytest_plugin.plugin; print(time.process_time() - started)"
    samples = [float(subprocess.run([sys.executable, "-c", code], env=_session_env(), capture_output=True, text=True, check=True).stdout) * 1e6 for _ in range(runs)]
    return Row(f"  of which: importing llm_replay.pytest_plugin.plugin after pytest (CPU, median of {runs})", statistics.median(samples))


# -- LangChain (built with the LangChain issue) ------------------------------------------------


def langchain_rows() -> list[Row]:
    try:
        importlib.import_module("llm_replay.langchain")
    except ImportError:
        return [Row("LangChain hit: skipped (llm_replay.langchain not available)", None)]
    if not (HERE / "langchain_hit.py").exists():
        return [Row("LangChain hit: skipped (benchmarks/langchain_hit.py not available)", None)]
    sys.path.insert(0, str(HERE))
    # langchain_hit.measure(): rows of name, median_us and ratio, the ratio to langchain_core's InMemoryCache.
    measured = importlib.import_module("langchain_hit").measure()
    return [Row(item["name"], item["median_us"], f"{item['ratio']:.2f}x InMemoryCache") for item in measured]


# -- report ------------------------------------------------------------------------------------


def _find(rows: list[Row], prefix: str) -> Row | None:
    return next((row for row in rows if row.name.startswith(prefix) and row.median_us is not None), None)


# The floor session of 1,000 tests (no plugin) in the reference run (docs/performance.md, "The reference run"): this machine's speed against
# it says how its µs compare with that run's. The targets are still checked in this machine's own µs.
REFERENCE_FLOOR_SESSION_US = 2.38e6
FLOOR_SESSION = "pytest session CPU, 1,000 tests x 1 call, no plugin (floor)"


def at_reference_speed(us: float, rows: list[Row]) -> str:
    """`` (~N µs at the reference run's speed)`` when this machine's floor session is over 15% off the reference's, else ''."""
    floor = _find(rows, FLOOR_SESSION)
    factor = floor.median_us / REFERENCE_FLOOR_SESSION_US if floor else 1.0  # type: ignore[operator]
    if abs(factor - 1) <= 0.15:
        return ""
    return f" (~{fmt_time(us / factor)} at the reference run's speed: this machine's floor session took {factor:.2f}x its {REFERENCE_FLOOR_SESSION_US / 1e6:.2f} s)"


def measured(row: Row, rows: list[Row]) -> str:
    """An added-time row as a target line shows it: its median and interval, and its figure at the reference run's
    speed; a median within noise is no figure, so it shows the interval alone."""
    if row.shown:
        return row.note
    return f"{fmt_time(row.median_us)} ({row.note}){at_reference_speed(row.median_us, rows)}"  # type: ignore[arg-type]


def verdict(row: Row, limit_us: float) -> str:
    """PASS when the median's whole interval is within the limit, MISS when all of it is over, else UNSURE; UNSURE too
    when the interval holds the median with under 75% confidence (fewer than 3 rounds, as in --quick)."""
    if row.confidence < 0.75:
        return "UNSURE"
    if row.high_us <= limit_us:
        return "PASS"
    return "MISS" if row.low_us > limit_us else "UNSURE"


def targets(rows: list[Row]) -> list[str]:
    """Issue 7's and issue 16's targets, each with what was measured and PASS, MISS or UNSURE."""
    lines = []

    def check(ok: bool | str, text: str) -> None:
        lines.append(f"{ok if isinstance(ok, str) else 'PASS' if ok else 'MISS'}  {text}")

    replays = [row for row in rows if row.name.startswith("llm_replay replay, ") and row.median_us]
    worst = max(float(row.ratio.split("x")[0]) for row in replays)
    check(worst <= 1.3, f"replay per call <= 1.3x the floor at every size (paired ratios): worst {worst:.2f}x")
    # each size's paired ratio to the floor, not its µs: sizes are timed minutes apart, and the machine drifts between
    sqlite_ratios = [float(row.ratio.split("x")[0]) for row in replays if ", SQLite, " in row.name]
    growth = sqlite_ratios[-1] / sqlite_ratios[0]
    check(growth <= 1.3, f"flat with size (SQLite, largest / smallest cassette, in paired ratios to the floor): {growth:.2f}x")
    vcr, ours = _find(rows, "vcrpy replay per call, 1,000"), _find(rows, "llm_replay replay, SQLite, 1,000 ")
    if vcr and ours:
        check(vcr.median_us / ours.median_us >= 50, f"at 1,000 interactions >= 50x faster per call than vcrpy: {vcr.median_us / ours.median_us:.0f}x")  # type: ignore[operator]
    for theirs in (row for row in rows if row.name.startswith("pytest session CPU, ") and row.name.endswith("pytest-recording")):
        mine = _find(rows, theirs.name.replace("pytest-recording", "llm_replay"))
        if mine:
            whole = theirs.median_us / mine.median_us  # type: ignore[operator]
            check(whole >= 10, f"test session >= 10x faster than pytest-recording: {whole:.1f}x for the whole session "
                  "(pytest start-up, client construction and the SDK included)")
    if pytest_recording_missing():
        lines.append(f"NOT MEASURED  test session >= 10x faster than pytest-recording: {pytest_recording_missing()}")
    # -- issue 16: per-test cost --
    for row in rows:
        if row.name.startswith("  llm_replay: added per test"):
            check(verdict(row, 300), f"{row.name.strip()} <= 0.3 ms: {measured(row, rows)}")
    fixture = _find(rows, "llm_cache fixture setup + teardown")
    if fixture:
        check(verdict(fixture, 100), f"llm_cache setup + teardown without a call <= 100 µs: {measured(fixture, rows)}")
    imports = _find(rows, "  of which: importing")
    if imports:
        check(imports.median_us <= 10_000, f"importing the plugin <= 10 ms: {fmt_time(imports.median_us)}{at_reference_speed(imports.median_us, rows)}")  # type: ignore[arg-type,operator]
    ours10, theirs10 = _find(rows, "llm_replay replay, SQLite, 10 "), _find(rows, "cassetter replay per call, 10 ")
    if ours10 and theirs10:
        mine_x, their_x = float(ours10.ratio.split("x")[0]), float(theirs10.ratio.split("x")[0])
        check(mine_x <= their_x, f"replay per call at 10 recordings at or below cassetter's (paired ratios to the floor): {mine_x:.2f}x vs {their_x:.2f}x")
    elif not theirs10:
        lines.append(f"NOT MEASURED  replay per call at 10 recordings vs cassetter: {cassetter_missing()}")
    return lines


def table(rows: list[Row]) -> str:
    header = ("row", "median", "ratio", "note")
    cells = [header, *[(row.name, row.shown or fmt_time(row.median_us), row.ratio, row.note) for row in rows]]
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
    # (tests, rounds, with the anchors): sessions of 10,000 tests compare llm_replay with the floor only.
    session_plan = [(200, 1, True)] if quick else [(1_000, 15, True), (10_000, 9, False)]
    session_cassette = 1_000 if quick else 10_000

    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="llm_replay_bench_") as temp:
        workdir = Path(temp)
        HANDLER.offline = False
        for _ in range(50):
            ask(0), ask_streaming(0)  # warm the SDK's caches before anything is timed
        floor_us = per_call_us(calls(ask), list(range(count)), repeats)
        stream_floor_us = per_call_us(calls(ask_streaming), list(range(count)), repeats)
        rows.append(Row("floor: openai SDK over httpx2.MockTransport, ~1 KB JSON", floor_us, "1.00x floor"))
        rows.append(Row("floor: the same, streaming (22 SSE chunks)", stream_floor_us, "1.00x stream floor"))
        replayed = replay_rows(workdir, sizes, count, repeats)
        rows += replayed
        replay_us = {size: row.median_us for size, row in zip(sizes, replayed[::2])}
        rows += cassetter_rows(workdir, [10, 1_000], count, repeats)
        rows += vcrpy_rows(workdir, [10, 1_000], floor_us, replay_us, quick)
        for tests, rounds, anchors in session_plan:
            rows += session_rows(workdir, tests, session_cassette, rounds, anchors)
        rows += fixture_rows(workdir, 2 * session_plan[0][0], 3 if quick else 9)
        rows.append(collect_only_row(workdir, 3 if quick else 11))
        rows.append(plugin_import_row(7))
        rows += langchain_rows()
    print(table(rows))
    print()
    print("\n".join(targets(rows)))
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; python {sys.version.split()[0]}, openai {openai.__version__}, {os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
