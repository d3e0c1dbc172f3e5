"""Import of vcrpy YAML written here (so it runs without ../shared): dialects, secrets, clashes, bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import openai
import yaml

import llm_replay
from llm_replay.cli import main
from llm_replay.stores.sqlite import SQLiteCache

ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
}
REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of France?"}]}


def vcr_yaml(path: Path, body: object, answer: bytes, response_headers: dict, uri: str = "https://example.openai.azure.com/openai/v1/chat/completions?api-key=SECRET-KEY") -> Path:
    """A vcrpy format-1 cassette with one interaction."""
    interaction = {
        "request": {"method": "POST", "uri": uri, "body": body, "headers": {"Authorization": ["Bearer sk-live-SECRET"], "Content-Type": ["application/json"]}},
        "response": {"status": {"code": 200, "message": "OK"}, "headers": response_headers, "body": {"string": answer}},
    }
    path.write_text(yaml.safe_dump({"version": 1, "interactions": [interaction]}))
    return path


def stored(cassette: Path) -> list:
    store = SQLiteCache(cassette, readonly=True)
    try:
        return list(store.interactions())
    finally:
        store.close()


def test_gzip_binary_pretty_json_and_string_headers_import_and_replay_without_secrets(tmp_path, env, capsys):
    source = vcr_yaml(
        tmp_path / "test_capital.yaml",
        body=json.dumps(REQUEST, indent=2),  # pretty-printed, as open-telemetry stores them
        answer=gzip.compress(json.dumps(ANSWER).encode()),  # bytes: YAML !!binary
        response_headers={"Content-Encoding": "gzip", "Content-Type": "application/json", "Set-Cookie": "session=SECRET-COOKIE", "openai-organization": ["org-SECRET"]},
    )
    assert "!!binary" in source.read_text()
    cassette = tmp_path / "llm_cache.sqlite3"
    assert main(["import", "--cassette", str(cassette), str(source)]) == 0
    assert capsys.readouterr().out.strip().startswith(f"imported 1 recordings from 1 files into {cassette}")

    raw = cassette.read_bytes()
    for secret in (b"SECRET-KEY", b"sk-live-SECRET", b"SECRET-COOKIE", b"org-SECRET"):
        assert secret not in raw
    (recording,) = stored(cassette)
    assert recording.tests == (str(source),) and recording.response.json() == ANSWER

    client = openai.OpenAI(base_url="https://example.openai.azure.com/openai/v1", api_key="other-key", default_query={"api-key": "other-key"}, max_retries=0)
    with llm_replay.use_cassette(cassette, mode="replay") as recorder:
        answer = client.chat.completions.create(**REQUEST)
    assert recorder.replayed == 1 and answer.to_dict() == ANSWER


def test_reimport_adds_nothing_and_a_clash_keeps_the_recording_already_there(tmp_path, capsys):
    cassette = tmp_path / "llm_cache.sqlite3"
    first = vcr_yaml(tmp_path / "a.yaml", json.dumps(REQUEST), json.dumps(ANSWER).encode(), {"Content-Type": ["application/json"]})
    other = vcr_yaml(tmp_path / "b.yaml", json.dumps(REQUEST), json.dumps({**ANSWER, "id": "chatcmpl-2"}).encode(), {"Content-Type": ["application/json"]})
    assert main(["import", "--cassette", str(cassette), str(first)]) == 0
    capsys.readouterr()
    assert main(["import", "--cassette", str(cassette), str(first), str(other)]) == 0
    out = capsys.readouterr().out
    assert "imported 0 recordings from 2 files" in out and "(1 already there, 1 clashes kept ours, 0 skipped)" in out
    assert "kept ours for " in out and "gpt-4o-mini" in out
    (recording,) = stored(cassette)
    assert recording.response.json()["id"] == "chatcmpl-1"


def test_redacted_uri_is_inferred_from_the_bodies(tmp_path, capsys):
    sse = "data: " + json.dumps({"object": "chat.completion.chunk", "id": "c", "choices": []}) + "\n\ndata: [DONE]\n\n"
    source = vcr_yaml(tmp_path / "redacted.yaml", json.dumps({**REQUEST, "stream": True}).encode(), sse.encode(), {"content-type": "**REDACTED**"}, uri="**REDACTED**")
    cassette = tmp_path / "llm_cache.sqlite3"
    assert main(["import", "--cassette", str(cassette), "--redacted-host", "https://gateway.example", str(source)]) == 0
    (recording,) = stored(cassette)
    assert recording.request.url == "https://gateway.example/v1/chat/completions"
    assert recording.response.headers["content-type"] == ["text/event-stream; charset=utf-8"]


def test_not_a_cassette_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "notes.yaml"
    bad.write_text("just: a mapping\n")
    assert main(["import", "--cassette", str(tmp_path / "c.sqlite3"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} is not a vcrpy cassette" in err and "interactions:" in err
    assert not (tmp_path / "c.sqlite3").exists(), "a failed import leaves no cassette behind"


def test_bare_status_and_typed_json_body_import_and_an_unknown_shape_names_its_file_and_field(tmp_path, capsys):
    """``status: 200`` with ``body: {type: json, content: …}`` used to crash import with a traceback."""
    interaction = {
        "request": {"method": "POST", "uri": "https://api.openai.com/v1/chat/completions", "body": {"type": "json", "content": REQUEST}, "headers": {}},
        "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": {"type": "json", "content": ANSWER}},
    }
    typed = tmp_path / "typed.yaml"
    typed.write_text(yaml.safe_dump({"interactions": [interaction]}))
    cassette = tmp_path / "llm_cache.sqlite3"
    assert main(["import", "--cassette", str(cassette), str(typed)]) == 0
    (recording,) = stored(cassette)
    assert recording.response.status == 200 and recording.response.json() == ANSWER
    assert recording.request.body == REQUEST and recording.request.model == "gpt-4o-mini"

    interaction["response"]["body"] = {"kind": "json", "payload": ANSWER}
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump({"interactions": [interaction]}))
    before = cassette.read_bytes()
    assert main(["import", "--cassette", str(cassette), str(odd)]) == 2
    error = capsys.readouterr().err
    assert f"{odd}: interaction 1: response.body: unrecognised body ['kind', 'payload']" in error and "Traceback" not in error
    assert cassette.read_bytes() == before, "a refused file writes nothing"

    interaction["response"] = {"status": "two hundred", "body": "x"}
    odd.write_text(yaml.safe_dump({"interactions": [interaction]}))
    assert main(["import", "--cassette", str(cassette), str(odd)]) == 2
    assert f"{odd}: interaction 1: unrecognised response.status 'two hundred'" in capsys.readouterr().err
