"""Matching, round two: spellings that share one sample sequence, URLs that are one URL in two spellings, and the
wording of a sequence miss outside pytest; through the real openai SDK over HTTP to the loopback fake."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import yaml

import llm_replay
from llm_replay.cli import main


def _ask(server, cassette, mode: str, temperatures: list[float]) -> list[str]:
    """One ``use_cassette`` block with ``repeats='sequence'`` asking the same question at each temperature in turn."""
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    with llm_replay.use_cassette(cassette, mode=mode, repeats="sequence"):
        return [
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Name a cat"}], temperature=t)
            .choices[0].message.content
            for t in temperatures
        ]


@pytest.mark.parametrize(
    ("recorded", "replayed"),
    [([0, 0], [0, 0.0]), ([0, 0.0], [0.0, 0.0]), ([0, 0.0], [0, 0]), ([0.0, 0], [0, 0.0])],
    ids=["plain-then-respelled", "mixed-replayed-respelled", "mixed-replayed-plain", "respelled-first"],
)
def test_one_request_in_two_spellings_takes_its_places_in_one_sequence(server, tmp_path, recorded, replayed):
    """``temperature=0`` then ``0.0`` are the same request twice: the second replays the second answer, not the first."""
    cassette = tmp_path / "sequence.sqlite3"
    answers = _ask(server, cassette, "record", recorded)
    assert len(set(answers)) == 2, "each sample was its own live call"
    assert _ask(server, cassette, "replay", replayed) == answers



# -- one URL in two spellings --------------------------------------------------------------------------------------


def _get(url: str, cassette, mode: str) -> tuple[int, bytes]:
    """A GET through httpx (which sends the path's percent-escapes and a host's trailing dot as written) in a block."""
    with llm_replay.use_cassette(cassette, mode=mode):
        answer = httpx.get(url, headers={"authorization": "Bearer sk-test-fake"})
    return answer.status_code, answer.content


@pytest.mark.parametrize(
    ("recorded", "replayed", "same"),
    [
        ("http://localhost:{port}/v1/files/file-20/content", "http://localhost:{port}/v1/files/file%2D20/content", True),
        ("http://localhost:{port}/v1/files/file%2d20/content", "http://localhost:{port}/v1/files/file-20/content", True),
        ("http://localhost:{port}/v1/files/file-20/content", "http://localhost:{port}/v1/files/%66ile-20/conten%74", True),
        ("http://localhost:{port}/v1/files/file-20%3a/content", "http://localhost:{port}/v1/files/file-20%3A/content", True),
        ("http://localhost:{port}/v1/files/file-20/content", "http://localhost.:{port}/v1/files/file-20/content", True),
        ("http://localhost:{port}/v1/files/file-20/content", "http://LocalHost.:{port}/v1/files/file-20/content", True),
        ("http://localhost:{port}/v1/files/file-20%3A/content", "http://localhost:{port}/v1/files/file-20:/content", False),
        ("http://localhost:{port}/v1/files/file%2F20/content", "http://localhost:{port}/v1/files/file/20/content", False),
        ("http://localhost:{port}/v1/files/file-20/content", "http://localhost:{port}/v1/files/file-21/content", False),
    ],
    ids=["escaped", "recorded-escaped", "letters-escaped", "escape-case", "trailing-dot", "dot-and-case", "reserved-colon", "reserved-slash", "other"],
)
def test_a_url_spelled_otherwise_replays_its_recording_and_another_url_misses(server, tmp_path, recorded, replayed, same):
    """Only unreserved characters (letters, digits, ``-._~``) are equal to their percent-escape, and escapes compare
    in either case (RFC 3986 6.2.2); a host's trailing dot names the same host."""
    port = server.base_url.split(":")[2].split("/")[0]
    cassette = tmp_path / "urls.sqlite3"
    answer = _get(recorded.format(port=port), cassette, "record")
    server.stop()
    if same:
        assert _get(replayed.format(port=port), cassette, "replay") == answer
    else:
        with pytest.raises(llm_replay.CassetteMiss, match="~ path:"):
            _get(replayed.format(port=port), cassette, "replay")


def _imported(cassette, uri: str) -> None:
    """A vcrpy cassette recorded by another client at ``uri`` (a chat answer "Paris"), imported as a user would."""
    answer = {"id": "c-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris"}}]}
    request = {"method": "POST", "uri": uri, "headers": {"Content-Type": ["application/json"]},
               "body": json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of France?"}]})}
    response = {"status": {"code": 200, "message": "OK"}, "headers": {"Content-Type": ["application/json"]}, "body": {"string": json.dumps(answer)}}
    source = cassette.with_suffix(".yaml")
    source.write_text(yaml.safe_dump({"version": 1, "interactions": [{"request": request, "response": response}]}, allow_unicode=True))
    assert main(["import", "--cassette", str(cassette), str(source)]) == 0


@pytest.mark.parametrize(
    ("recorded", "asked", "same"),
    [
        ("https://bücher.example/v1", "https://bücher.example/v1", True),  # httpx sends xn--bcher-kva.example
        ("https://XN--BCHER-KVA.Example.:443/v1", "https://bücher.example/v1", True),
        ("https://Bücher.example/v1", "https://xn--bcher-kva.example/v1", True),
        ("https://bucher.example/v1", "https://bücher.example/v1", False),
        ("https://xn--bcher-kva.example/v1", "https://bücher.example:8443/v1", False),
    ],
    ids=["unicode-recorded", "ascii-recorded-odd-case", "unicode-asked-as-ascii", "other-name", "other-port"],
)
def test_an_international_host_in_either_form_replays_its_recording(tmp_path, recorded, asked, same):
    """A host name's Unicode form and its IDNA ``xn--`` form are one name: httpx sends the ``xn--`` form, a cassette
    from another client may hold either."""
    cassette = tmp_path / "idna.sqlite3"
    _imported(cassette, recorded + "/chat/completions")
    client = openai.OpenAI(base_url=asked, api_key="any", max_retries=0)
    with llm_replay.use_cassette(cassette, mode="replay"):
        if not same:
            with pytest.raises(llm_replay.CassetteMiss, match="~ host:"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France?"}])
            return
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France?"}])
    assert answer.choices[0].message.content == "Paris"


def test_a_miss_shows_what_differs_not_how_the_url_is_spelled(server, tmp_path):
    port = server.base_url.split(":")[2].split("/")[0]
    cassette = tmp_path / "urls.sqlite3"
    _get(f"http://localhost:{port}/v1/files/file-20/content?page=1", cassette, "record")
    server.stop()
    with pytest.raises(llm_replay.CassetteMiss) as missed:
        _get(f"http://LOCALHOST.:{port}/v1/files/file%2D20/content?page=2", cassette, "replay")
    assert "~ query[0][1]: \"1\" -> \"2\"" in str(missed.value)
    assert "~ path" not in str(missed.value) and "~ host" not in str(missed.value), str(missed.value)
