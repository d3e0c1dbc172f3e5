"""The canonical request and its hash: stable where the request means the same, different where it does not."""

from __future__ import annotations

import json

from llm_replay.model.fingerprint import (
    CanonicalRequest,
    canonicalize,
    differences,
    distance,
)

URL = "https://api.openai.com/v1/chat/completions"


def _chat(**body) -> CanonicalRequest:
    return canonicalize("POST", URL, json.dumps(body).encode(), "application/json")


def test_key_order_and_whitespace_do_not_change_the_fingerprint() -> None:
    compact = canonicalize("post", URL, b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', "application/json")
    pretty = canonicalize("POST", URL, b'{\n  "messages": [{"content": "hi", "role": "user"}],\n  "model": "m"\n}', "application/json")
    assert compact.fingerprint == pretty.fingerprint
    assert compact.method == "POST"


def test_any_change_of_meaning_changes_the_fingerprint() -> None:
    base = _chat(model="m", messages=[{"role": "user", "content": "hi"}])
    assert base.fingerprint != _chat(model="m", messages=[{"role": "user", "content": "hi!"}]).fingerprint
    assert base.fingerprint != _chat(model="m2", messages=[{"role": "user", "content": "hi"}]).fingerprint
    other_host = canonicalize("POST", "https://example.test/v1/chat/completions", json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode())
    assert base.fingerprint != other_host.fingerprint


def test_query_is_sorted_and_credentials_in_it_are_dropped() -> None:
    first = canonicalize("GET", "https://g.test/v1/models?b=2&key=SECRET&a=1", None)
    second = canonicalize("GET", "https://g.test/v1/models?a=1&b=2&key=OTHER", None)
    assert first.fingerprint == second.fingerprint
    assert first.query == (("a", "1"), ("b", "2"))
    assert "SECRET" not in first.to_json()


def test_multipart_is_parsed_without_its_boundary() -> None:
    def form(boundary: str, audio: bytes) -> bytes:
        return (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode() + audio + f"\r\n--{boundary}--\r\n".encode()

    one = canonicalize("POST", URL, form("aaa111", b"\x00\x01audio"), "multipart/form-data; boundary=aaa111")
    two = canonicalize("POST", URL, form("bbb222", b"\x00\x01audio"), "multipart/form-data; boundary=bbb222")
    three = canonicalize("POST", URL, form("ccc333", b"\x00\x02audio"), "multipart/form-data; boundary=ccc333")
    assert one.body_kind == "multipart"
    assert one.fingerprint == two.fingerprint != three.fingerprint
    assert one.model == "whisper-1"
    assert one.body[1]["filename"] == "a.wav" and one.body[1]["size"] == 7


def test_text_binary_and_broken_json_bodies_are_kept() -> None:
    assert canonicalize("POST", URL, b"plain words").body == "plain words"
    assert canonicalize("POST", URL, b"\xff\xfe\x00").body_kind == "bytes"
    broken = canonicalize("POST", URL, b'{"model": "m", ', "application/json")
    assert (broken.body_kind, broken.body) == ("text", '{"model": "m", ')


def test_round_trip_through_stored_text_keeps_the_fingerprint() -> None:
    request = _chat(model="m", messages=[{"role": "user", "content": "héllo"}], temperature=0)
    assert CanonicalRequest.from_json(request.to_json()).fingerprint == request.fingerprint


def test_differences_name_the_fields_and_the_closest_prompt_wins() -> None:
    recorded = _chat(model="m", messages=[{"role": "user", "content": "capital of France?"}], top_p=1)
    asked = _chat(model="m", messages=[{"role": "user", "content": "capital of Spain?"}], temperature=0.2)
    described = [difference.describe() for difference in differences(recorded, asked)]
    assert described == [
        '~ body.messages[0].content: "capital of France?" -> "capital of Spain?"',
        "+ body.temperature: 0.2",
        "- body.top_p: 1",
    ]
    unrelated = _chat(model="m", messages=[{"role": "user", "content": "tell me a joke"}], top_p=1)
    assert distance(recorded, asked) < distance(unrelated, asked)


def test_prompt_reads_chat_responses_and_completions() -> None:
    assert _chat(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]).prompt() == "(user) hi"
    assert _chat(input="write a poem").prompt() == "write a poem"
    assert _chat(prompt=["a", "b"]).prompt() == "b"


def test_a_nan_in_a_body_equals_itself() -> None:
    request = canonicalize("POST", URL, b"[NaN, 1]", "application/json")
    assert differences(request, request) == [] and distance(request, request) == 0


def test_repeated_query_parameters_are_one_key_in_any_order() -> None:
    """As recorded keys have it: a stored request holds its query sorted, so no cassette keeps the order a
    repeated parameter had, and keying by it would strand those recordings (docs/deterministic-replay.md)."""
    first = canonicalize("GET", "https://g.test/v1/files?order=2&order=1&b=0", None)
    second = canonicalize("GET", "https://g.test/v1/files?b=0&order=1&order=2", None)
    assert first.fingerprint == second.fingerprint
    assert first.query == (("b", "0"), ("order", "1"), ("order", "2"))
