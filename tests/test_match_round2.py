"""Matching, round two: spellings that share one sample sequence, and URLs that are one URL in two spellings; through
real clients (the openai SDK, httpx) over HTTP to the loopback fake, or from a vcrpy cassette another client wrote."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import yaml

import llm_replay
from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize, respelled


def _ask(client: openai.OpenAI, cassette, mode: str, temperatures: list[float]) -> list[str]:
    """One ``use_cassette`` block with ``repeats='sequence'`` asking the same question at each temperature in turn."""
    with llm_replay.use_cassette(cassette, mode=mode, repeats="sequence"):
        return [
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Name a cat"}], temperature=t)
            .choices[0].message.content
            for t in temperatures
        ]


SPELLINGS = {  # what a test recorded, and what it sends when replayed
    "plain then respelled": ([0, 0], [0, 0.0]),
    "mixed, replayed respelled": ([0, 0.0], [0.0, 0.0]),
    "mixed, replayed plain": ([0, 0.0], [0, 0]),
    "respelled first": ([0.0, 0], [0, 0.0]),
}


def test_one_request_in_two_spellings_takes_its_places_in_one_sequence(server, tmp_path):
    """``temperature=0`` then ``0.0`` are the same request twice: the second replays the second answer, not the first
    (it replayed the first again: each spelling counted its own places)."""
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    for number, (recorded, replayed) in enumerate(SPELLINGS.values()):
        cassette = tmp_path / f"sequence-{number}.sqlite3"
        answers = _ask(client, cassette, "record", recorded)
        assert len(set(answers)) == 2, "each sample was its own live call"
        assert _ask(client, cassette, "replay", replayed) == answers, list(SPELLINGS)[number]


# -- one URL in two spellings --------------------------------------------------------------------------------------

FILE = "http://localhost:{port}/v1/files/file-20/content"
URLS = [  # (recorded, asked, whether they are one URL)
    (FILE, "http://localhost:{port}/v1/files/file%2D20/content", True),
    ("http://localhost:{port}/v1/files/file%2d21/content", "http://localhost:{port}/v1/files/file-21/content", True),
    (FILE, "http://localhost:{port}/v1/files/%66ile-20/conten%74", True),
    ("http://localhost:{port}/v1/files/file-22%3a/content", "http://localhost:{port}/v1/files/file-22%3A/content", True),
    (FILE, "http://localhost.:{port}/v1/files/file-20/content", True),
    (FILE, "http://LocalHost.:{port}/v1/files/file-20/content", True),
    ("http://localhost:{port}/v1/files/file-23%3A/content", "http://localhost:{port}/v1/files/file-23:/content", False),
    ("http://localhost:{port}/v1/files/file%2F24/content", "http://localhost:{port}/v1/files/file/24/content", False),
    (FILE, "http://localhost:{port}/v1/files/file-25/content", False),
]


def _got(client: httpx.Client, url: str) -> tuple[int, bytes] | str:
    """A GET's status and body, or the miss's field diff (httpx sends percent-escapes and a trailing dot as written)."""
    try:
        answer = client.get(url, headers={"authorization": "Bearer sk-test-fake"})
    except llm_replay.CassetteMiss as miss:
        return "\n".join(line.strip() for line in str(miss).splitlines() if line.strip().startswith("~ "))
    return answer.status_code, answer.content


def test_a_url_spelled_otherwise_replays_its_recording_and_another_url_misses(server, tmp_path):
    """Only unreserved characters (letters, digits, ``-._~``) equal their percent-escape, escapes compare in either
    case (RFC 3986 6.2.2), and a host's trailing dot names the same host. A miss's diff leaves spellings out."""
    port = server.base_url.split(":")[2].split("/")[0]
    cassette = tmp_path / "urls.sqlite3"
    with httpx.Client() as client:
        with llm_replay.use_cassette(cassette, mode="record"):
            recorded = {url: _got(client, url.format(port=port)) for url in {url for url, _, _ in URLS} | {FILE + "?page=1"}}
        server.stop()
        with llm_replay.use_cassette(cassette, mode="replay"):
            for url, asked, same in URLS:
                got = _got(client, asked.format(port=port))
                assert (got == recorded[url]) is same, (url, asked, got)
                assert same or got.startswith("~ path:"), got
            diff = _got(client, f"http://LOCALHOST.:{port}/v1/files/file%2D20/content?page=2")
    assert diff == '~ query[0][1]: "1" -> "2"', "the path and host differ in spelling only"


HOSTS = [  # (recorded by another client, asked through httpx, whether they name one server)
    ("https://bücher.example", "https://bücher.example", True),  # httpx sends xn--bcher-kva.example
    ("https://XN--BCHER-KVA.Beispiel.:443", "https://bücher.beispiel", True),
    ("https://Bücher.test", "https://xn--bcher-kva.test", True),
    ("https://bucher.other", "https://bücher.other", False),
    ("https://xn--bcher-kva.port", "https://bücher.port:8443", False),
]


def test_an_international_host_in_either_form_replays_its_recording(tmp_path):
    """A host name's Unicode form and its IDNA ``xn--`` form are one name: httpx sends the ``xn--`` form, a cassette
    imported from another client may hold either."""
    cassette = tmp_path / "idna.sqlite3"
    source = tmp_path / "idna.yaml"
    source.write_text(yaml.safe_dump({"version": 1, "interactions": [_chat_interaction(recorded) for recorded, _, _ in HOSTS]}, allow_unicode=True))
    assert main(["import", "--cassette", str(cassette), str(source)]) == 0
    with httpx.Client() as client, llm_replay.use_cassette(cassette, mode="replay"):
        for recorded, asked, same in HOSTS:
            try:
                answer = client.post(asked + "/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
            except llm_replay.CassetteMiss as miss:
                answer = "missed" if "~ host:" in str(miss) else str(miss)
            assert answer == (f"answer from {recorded}" if same else "missed"), (recorded, asked)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of France?"}]}


def _chat_interaction(host: str) -> dict:
    """A vcrpy interaction: a chat request to ``host`` and an answer naming it."""
    answer = {"id": "c-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"answer from {host}"}}]}
    request = {"method": "POST", "uri": host + "/v1/chat/completions", "headers": {"Content-Type": ["application/json"]}, "body": json.dumps(CHAT)}
    response = {"status": {"code": 200, "message": "OK"}, "headers": {"Content-Type": ["application/json"]}, "body": {"string": json.dumps(answer)}}
    return {"request": request, "response": response}


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("https://xn--abc-.example", "https://abc.example", False),  # decodes to plain ASCII: no A-label
        ("https://xn--zz.example", "https://xn--zz.example.", True),  # not Punycode: kept, only the dot goes
        ("http://[::1]:80", "http://[::1]", True),
        ("https://api.example.com.:443", "https://API.example.com", True),
        ("https://api.example.com..", "https://api.example.com", False),  # one dot is the root's, two are no name
    ],
)
def test_hosts_respell_alike_only_when_they_name_one_server(one, other, same):
    def plain(host: str) -> str:
        return respelled(canonicalize("GET", host + "/v1/models", None)).host

    assert (plain(one) == plain(other)) is same
