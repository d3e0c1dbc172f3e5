"""``llm-replay export`` of streamed recordings, and ``audit``/``scrub`` of the YAML it writes: a secret a stream
spreads over its events (or hides in an event stream's base64 chunk) is found and removed in the export as in the
cassette. Real SDKs against the loopback fakes; the export is imported back and replayed through the SDK."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_stream_secrets import ANSWER, ANTHROPIC_KEY, NAME, _anthropic_text, _invoke_text, _told

import llm_replay
from llm_replay.cli import main


def _recorded(tmp_path: Path, anthropic_server: Any, bedrock_server: Any) -> Path:
    """A cassette an older version wrote (no variable held the key): the key split over an Anthropic stream's events,
    and whole in one of Bedrock's base64 chunks (a word per chunk), so no search of either stored body sees it."""
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        assert _anthropic_text(anthropic_server, _told(ANTHROPIC_KEY)) == ANSWER.format(ANTHROPIC_KEY)
        assert _invoke_text(bedrock_server, _told(ANTHROPIC_KEY, size=None)) == ANSWER.format(ANTHROPIC_KEY)
    assert ANTHROPIC_KEY.encode() not in cassette.read_bytes()
    return cassette


@pytest.mark.parametrize("gzipped", [False, True], ids=["yaml", "yaml.gz"])
def test_an_export_holding_a_streamed_key_fails_the_audit_and_scrub_leaves_its_placeholder(gzipped, anthropic_server, bedrock_server, aws, tmp_path, capsys):
    cassette = _recorded(tmp_path, anthropic_server, bedrock_server)
    assert main(["export", "--cassette", str(cassette), "--yaml", str(tmp_path / "out")]) == 0
    (export,) = (tmp_path / "out").rglob("*.yaml")
    if gzipped:
        export = export.rename(export.with_name(export.name + ".gz"))
        export.write_bytes(gzip.compress(export.read_bytes()))

    capsys.readouterr()
    assert main(["audit", str(export)]) == 1
    out = capsys.readouterr().out
    assert "interaction 1, response body, streamed text joined per field: Anthropic API key 'sk-ant…NmAA'" in out, out
    assert "interaction 2, response body, event stream payloads decoded" in out and "Anthropic API key 'sk-ant…NmAA'" in out, out

    aws.setenv(NAME, ANTHROPIC_KEY)
    assert main(["scrub", str(export)]) == 0
    assert main(["audit", str(export)]) == 0
    aws.delenv(NAME)
    plain = gzip.decompress(export.read_bytes()) if gzipped else export.read_bytes()
    assert len(yaml.safe_load(plain)["interactions"]) == 2, "still a vcrpy cassette"
    if gzipped:
        export.write_bytes(plain)
        export = export.rename(export.with_name(export.name.removesuffix(".gz")))

    replayed = tmp_path / "replayed.sqlite3"
    assert main(["import", "--cassette", str(replayed), str(export)]) == 0
    anthropic_server.stop()
    bedrock_server.stop()
    scrubbed = ANSWER.format(f"<scrubbed:{NAME}>")
    with llm_replay.use_cassette(replayed, mode="replay") as replaying:
        assert _anthropic_text(anthropic_server, _told("unset")) == scrubbed
        assert _invoke_text(bedrock_server, {}) == scrubbed
    assert replaying.replayed == 2


def test_export_joins_a_stream_and_scrubs_a_split_secret_as_the_cassette_stores_it(anthropic_server, bedrock_server, aws, tmp_path, capsys):
    """The variable set when exporting: the export is written through the scrubber, streams joined as when recording."""
    cassette = _recorded(tmp_path, anthropic_server, bedrock_server)
    aws.setenv(NAME, ANTHROPIC_KEY)
    assert main(["export", "--cassette", str(cassette), "--yaml", str(tmp_path / "out")]) == 0
    (export,) = (tmp_path / "out").rglob("*.yaml")
    assert main(["audit", str(export)]) == 0
    aws.delenv(NAME)
    capsys.readouterr()
    assert main(["audit", str(export)]) == 0, "by its shape neither: the placeholder stands where the key was"
    replayed = tmp_path / "replayed.sqlite3"
    assert main(["import", "--cassette", str(replayed), str(export)]) == 0
    anthropic_server.stop()
    bedrock_server.stop()
    with llm_replay.use_cassette(replayed, mode="replay"):
        assert _anthropic_text(anthropic_server, {}) == ANSWER.format(f"<scrubbed:{NAME}>")
        assert _invoke_text(bedrock_server, {}) == ANSWER.format(f"<scrubbed:{NAME}>")


def test_a_vcrpy_json_cassette_holding_a_streamed_key_fails_the_audit_and_scrub_rewrites_it_as_json(tmp_path, capsys):
    """vcrpy's json serializer writes the same cassette as JSON: its streams are read and rewritten the same way."""
    from vcr.serializers import jsonserializer

    pieces = [ANTHROPIC_KEY[at : at + 4] for at in range(0, len(ANTHROPIC_KEY), 4)]
    events = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}} for piece in ["key: ", *pieces]]
    body = "".join(f"event: content_block_delta\ndata: {json.dumps(event)}\n\n" for event in events)
    cassette = {"version": 1, "interactions": [{
        "request": {"method": "POST", "uri": "https://api.anthropic.com/v1/messages", "body": '{"stream": true}', "headers": {}},
        "response": {"status": {"code": 200, "message": "OK"}, "headers": {"content-type": ["text/event-stream"], "Content-Length": [str(len(body))]},
                     "body": {"string": body}},
    }]}
    export = tmp_path / "cassette.json"
    export.write_text(jsonserializer.serialize(cassette))
    capsys.readouterr()
    assert main(["audit", str(export)]) == 1
    assert "interaction 1, response body, streamed text joined per field: Anthropic API key 'sk-ant…NmAA'" in capsys.readouterr().out
    assert main(["scrub", str(export)]) == 0
    response = json.loads(export.read_text())["interactions"][0]["response"]
    joined = "".join(json.loads(line[6:])["delta"]["text"] for line in response["body"]["string"].splitlines() if line.startswith("data: "))
    assert joined == "key: <scrubbed>"
    assert response["headers"]["Content-Length"] == [str(len(response["body"]["string"].encode()))]
