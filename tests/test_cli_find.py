"""``llm-replay ls`` filters and ``--json``, readable LangChain and embeddings prompts, and ``rm`` that erases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.load import dumps
from langchain_core.messages import HumanMessage, SystemMessage

from llm_replay.cli import main
from llm_replay.engine.project import run_ledger
from llm_replay.engine.langchain_keys import langchain_request
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.runs import RunRecord
from llm_replay.stores.sqlite import SQLiteCache

CHAT = "https://api.openai.com/v1/chat/completions"


def chat(prompt: str, model: str, test: str, recorded_at: str, url: str = CHAT) -> Interaction:
    request = canonicalize("POST", url, json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]}), "application/json")
    answer = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": f"ANSWER-TO-{prompt}"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 11, "completion_tokens": 7}}
    response = RecordedResponse(200, "OK", {"content-type": ["application/json"]}, json.dumps(answer).encode())
    return Interaction.of(request, response, recorded_at=recorded_at, latency_ms=350.0, tests=(test,))


@pytest.fixture
def cassette(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Six recordings: two tests of one file, another file, Anthropic, embeddings with three inputs, LangChain."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    path = tmp_path / "cassettes" / "llm_cache.sqlite3"
    store = SQLiteCache(path)
    recordings = [
        chat("Capital of France?", "gpt-4o-mini", "tests/test_geo.py::test_capital", "2026-11-01T10:00:00+00:00"),
        chat("Capital of Peru?", "gpt-4o-mini", "tests/test_geo.py::test_capital_peru", "2026-11-20T10:00:00+00:00"),
        chat("Tell a joke", "gpt-4o", "tests/test_fun.py::test_joke", "2026-11-25T10:00:00+00:00"),
        chat("Bonjour", "claude-3-5-haiku-latest", "tests/test_fun.py::test_hello", "2026-11-26T10:00:00+00:00", url="https://api.anthropic.com/v1/messages"),
    ]
    embed = canonicalize("POST", "https://api.openai.com/v1/embeddings", json.dumps({"model": "text-embedding-3-small", "input": ["red apple", "green pear", "blue plum"]}), "application/json")
    recordings.append(Interaction.of(embed, RecordedResponse(200, "OK", {}, b'{"object": "list", "data": []}'), recorded_at="2026-11-27T10:00:00+00:00", tests=("tests/test_fun.py::test_embed",)))
    prompt = dumps([SystemMessage("Answer in French."), HumanMessage("How are you today?")])
    llm_string = json.dumps({"lc": 1, "type": "constructor", "id": ["langchain", "chat_models", "openai", "ChatOpenAI"], "kwargs": {"model_name": "gpt-4o-mini"}, "name": "ChatOpenAI"}) + "---[('stop', None)]"
    lc = langchain_request(prompt, llm_string)
    recordings.append(Interaction.of(lc, RecordedResponse(200, "OK", {}, b"[]"), recorded_at="2026-11-28T10:00:00+00:00", tests=("tests/test_chain.py::test_chain",)))
    for recording in recordings:
        store.put(recording)
    store.put(chat("Unused question", "gpt-4o", "tests/test_gone.py::test_old", "2026-10-01T10:00:00+00:00"))  # its test file is gone
    store.close()
    for test_file in ("test_geo.py", "test_fun.py", "test_chain.py"):
        (tmp_path / "tests" / test_file).parent.mkdir(exist_ok=True)
        (tmp_path / "tests" / test_file).write_text("".join(f"def {test.split('::')[1]}(): ...\n" for r in recordings for test in r.tests if test_file in test))
    # A run in which every test passed; test_embed without its recording: it and the gone test's become unused.
    used = recordings[:4] + recordings[5:]
    passes = {test: [r.key for r in used if test in r.tests] for r in recordings for test in r.tests}
    run_ledger(path).record(RunRecord("run-1", "2026-11-29T09:00:00+00:00", "2026-11-29T10:00:00+00:00", len(passes)), passes, {r.key: 1 for r in used})
    return path


def ls(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["ls", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_ls_json_and_each_filter(cassette, capsys):
    everything = ls(capsys)
    assert len(everything) == 7 and {"key", "endpoint", "model", "prompt", "tests", "input_tokens", "latency_ms"} <= set(everything[0])
    france = next(row for row in everything if row["prompt"] == "(user) Capital of France?")
    assert france["input_tokens"] == 11 and france["output_tokens"] == 7 and france["latency_ms"] == 350.0 and france["status"] == 200

    def prompts(*args: str) -> set[str]:
        return {row["prompt"] for row in ls(capsys, *args)}

    assert prompts("--test", "tests/test_geo.py::test_capital") == {"(user) Capital of France?"}, "not test_capital_peru"
    assert prompts("--test", "tests/test_geo.py") == {"(user) Capital of France?", "(user) Capital of Peru?"}
    assert prompts("--test", "tests") == prompts() and prompts("--test", "tests/test_ge") == set()
    assert prompts("--model", "gpt-4o") == {"(user) Tell a joke", "(user) Unused question"}
    assert prompts("--model", "gpt-4o*", "--test", "tests/test_geo.py") == {"(user) Capital of France?", "(user) Capital of Peru?"}
    assert prompts("--endpoint", "api.anthropic.com") == {"(user) Bonjour"}
    assert prompts("--since", "2026-11-26") == {"(user) Bonjour", "red apple | green pear | blue plum", "(human) How are you today?"}
    assert prompts("--since", "3650d") == prompts()
    assert prompts("--unused") == {"(user) Unused question", "red apple | green pear | blue plum"}


def test_ls_table_shows_langchain_prompts_as_text_and_every_embedding_input(cassette, capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "(human) How are you today?" in out and '"lc"' not in out, "a LangChain prompt reads as its message, not its JSON"
    assert "red apple | green pear | blue plum" in out
    assert out.rstrip().endswith("7 recordings")


def test_bad_since_and_rm_without_a_choice_are_refused(cassette, capsys):
    before = cassette.read_bytes()
    assert main(["ls", "--since", "last tuesday"]) == 2
    assert "--since 'last tuesday': give a date or time" in capsys.readouterr().err
    assert main(["rm"]) == 2
    assert "say what to delete" in capsys.readouterr().err
    assert main(["rm", "ffffffff"]) == 2
    assert "no recording with key 'ffffffff'" in capsys.readouterr().err
    assert cassette.read_bytes() == before


def test_rm_by_a_test_that_owns_nothing_says_so_and_deletes_nothing(cassette, capsys):
    before = cassette.read_bytes()
    assert main(["rm", "--test", "tests/test_geo.py::test_capitol"]) == 0  # mistyped
    out = capsys.readouterr().out
    assert "no recording owned by test 'tests/test_geo.py::test_capitol' matches: llm-replay ls shows each recording's tests" in out
    assert "deleted 0 recordings" in out and cassette.read_bytes() == before
    assert main(["rm", "--test", "tests/test_geo.py::test_capital", "--dry-run"]) == 0
    assert "no recording owned by" not in capsys.readouterr().out


def test_rm_by_test_and_by_key_erases_those_bytes_and_keeps_the_rest(cassette, capsys):
    assert main(["rm", "--test", "tests/test_geo.py::test_capital", "--dry-run"]) == 0
    assert "would delete 1 recording from" in capsys.readouterr().out
    assert b"ANSWER-TO-Capital of France?" in cassette.read_bytes()

    assert main(["rm", "--test", "tests/test_geo.py::test_capital"]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 recording from" in out and "Capital of France?" in out
    joke = next(row["key"] for row in ls(capsys) if row["prompt"] == "(user) Tell a joke")
    assert main(["rm", joke[:10]]) == 0
    raw = cassette.read_bytes()
    for gone in (b"Capital of France?", b"ANSWER-TO-Capital of France?", b"Tell a joke", b"ANSWER-TO-Tell a joke"):
        assert gone not in raw, f"{gone!r} is still in the file after rm"
    for kept in (b"ANSWER-TO-Capital of Peru?", b"ANSWER-TO-Bonjour", b"green pear", b"How are you today?", b"ANSWER-TO-Unused question"):
        assert kept in raw, f"rm deleted more than it was asked: {kept!r}"
    assert {row["prompt"] for row in ls(capsys)} == {"(user) Capital of Peru?", "(user) Bonjour", "red apple | green pear | blue plum", "(human) How are you today?", "(user) Unused question"}
    assert not Path(f"{cassette}-wal").exists()


def test_rm_by_test_keeps_a_recording_another_test_replayed_in_a_run_that_wrote_no_owners(cassette, capsys):
    """A replay run writes nothing into the cassette, so the other test that replays it is no stored owner; the run
    bookkeeping knows it, and rm --test deleted what that test still needs."""
    france = next(row["key"] for row in ls(capsys) if row["prompt"] == "(user) Capital of France?")
    peru = next(row["key"] for row in ls(capsys) if row["prompt"] == "(user) Capital of Peru?")
    keys = {row.key for row in SQLiteCache(cassette, readonly=True).interactions()}
    used = [key for key in keys if key[0].startswith((france[:12], peru[:12]))]
    run_ledger(cassette).record(RunRecord("run-2", "2026-11-30T09:00:00+00:00", "2026-11-30T10:00:00+00:00", 1), {"tests/test_geo.py::test_capital_peru": used}, {})
    before = cassette.read_bytes()
    assert main(["rm", "--test", "tests/test_geo.py::test_capital"]) == 0
    out = capsys.readouterr().out
    assert f"kept {france[:12]}" in out and "also used by tests/test_geo.py::test_capital_peru" in out and "deleted 0 recordings" in out
    assert cassette.read_bytes() == before


def test_stats_prices_what_replays_saved_with_the_ini_prices(cassette, capsys):
    (cassette.parents[1] / "pytest.ini").write_text("[pytest]\nllm_prices =\n    gpt-4o-mini: 1000000 1000000\n    gpt-4o: 1000000 0\n")
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    # replayed once each: France and Peru (11 + 7 tokens at $1 each), the joke (11 input tokens at $1), and Bonjour
    # at genai-prices' Claude price (a few millionths of a dollar)
    assert "saved by replays:  72 tokens, 1.4 s of API time, about $47.00" in out and "no price" not in out  # as the session line writes it
    assert "tokens recorded:   55 in, 35 out (5 of 7 recordings report usage)" in out


def test_the_table_reads_requests_with_sqlite_json_exactly_as_python_reads_them(cassette):
    from llm_replay.cli.listing import list_lines
    from llm_replay.cli.selection import Selection

    long_prompt = chat("a " * 30 + "question with content parts", "gpt-4o", "tests/test_more.py::test_long", "2026-11-29T10:00:00+00:00")
    parts = canonicalize("POST", CHAT, json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "look at this"}]}]}), "application/json")
    store = SQLiteCache(cassette)
    store.put(long_prompt)
    store.put(Interaction.of(parts, RecordedResponse(200, "OK", {}, b"{}"), tests=("tests/test_more.py::test_parts",)))
    try:
        read_by_sqlite = list(Selection().select(store.summaries(shown=True)))
        assert sum(listed.row.last_text is not None for listed in read_by_sqlite) == 6, "SQLite read each chat's last message"
        assert list_lines(read_by_sqlite) == list_lines(Selection().select(store.summaries()))
    finally:
        store.close()
