"""Real vcrpy cassettes from public projects, imported, then replayed offline through the real SDKs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import openai
import pytest
import vcr

import llm_replay
from llm_replay.cli import main
from llm_replay.model.interaction import Interaction
from llm_replay.stores.sqlite import SQLiteCache
from llm_replay.stores.yaml_io import interactions_from_yaml

# ../shared beside the repository; LLM_REPLAY_REAL_CASSETTES points elsewhere (e.g. from a git worktree).
REAL_CASSETTES = Path(os.environ.get("LLM_REPLAY_REAL_CASSETTES") or Path(__file__).parents[1].parent / "shared" / "real-cassettes")
pytestmark = pytest.mark.skipif(not REAL_CASSETTES.is_dir(), reason=f"real cassettes not found at {REAL_CASSETTES} (they live beside the repository, in ../shared)")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every real cassette imported into one SQLite cassette, through the command users run."""
    cassette = tmp_path_factory.mktemp("real") / "llm_cache.sqlite3"
    assert main(["import", "--cassette", str(cassette), str(REAL_CASSETTES)]) == 0
    return cassette


def _recordings(cassette: Path) -> list[Interaction]:
    store = SQLiteCache(cassette, readonly=True)
    try:
        return list(store.interactions())
    finally:
        store.close()


def _sse_events(body: bytes) -> list[dict]:
    return [json.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def _send_with_openai_sdk(recording: Interaction) -> object:
    """What the application would have got back from the openai SDK for this request, as plain data."""
    request = recording.request
    client = openai.OpenAI(base_url=request.host + "/v1", api_key=os.environ.get("OPENAI_API_KEY", "placeholder"), max_retries=0)
    body = dict(request.body)
    endpoint = request.path.removeprefix("/v1")
    if endpoint == "/embeddings":  # create() would add encoding_format=base64, which the recording never sent
        return client.post("/embeddings", body=body, cast_to=openai.types.CreateEmbeddingResponse).to_dict(warnings=False)
    create = {"/chat/completions": client.chat.completions.create, "/completions": client.completions.create, "/responses": client.responses.create}[endpoint]
    answer = create(**body)
    if body.get("stream"):
        return [event.to_dict() for event in answer]
    return answer.to_dict()


def test_every_real_cassette_imports(imported):
    recordings = _recordings(imported)
    hosts = {recording.request.host for recording in recordings}
    # the four providers shared/real-cassettes/README.md says it holds
    assert hosts == {
        "https://api.openai.com", "https://api.anthropic.com",
        "https://generativelanguage.googleapis.com", "https://bedrock-runtime.us-east-1.amazonaws.com",
    }
    assert len(recordings) >= 60
    for recording in recordings:
        headers = {name.lower() for name in recording.response.headers}
        assert not headers & {"set-cookie", "openai-organization", "anthropic-organization-id", "content-encoding"}, recording.request.url
        assert recording.response.body and int(recording.response.headers["content-length"][0]) == len(recording.response.body)


def test_openai_recordings_replay_through_the_openai_sdk(imported, env):
    recordings = [r for r in _recordings(imported) if r.request.host == "https://api.openai.com"]
    replayed = 0
    with llm_replay.use_cassette(imported, mode="replay", repeats="sequence") as recorder:
        for recording in recordings:
            recorded = recording.response
            if recorded.status >= 400:
                with pytest.raises(openai.APIStatusError) as error:
                    _send_with_openai_sdk(recording)
                assert error.value.status_code == recorded.status
                assert error.value.body == recorded.json()["error"]
            elif recording.request.body.get("stream"):
                assert _send_with_openai_sdk(recording) == _sse_events(recorded.body), recording.request.url
            else:
                assert _send_with_openai_sdk(recording) == recorded.json(), recording.request.url
            replayed += 1
    assert replayed == len(recordings) == recorder.replayed and recorder.missed == 0


def test_anthropic_recordings_replay_over_httpx(imported, env):
    recordings = [r for r in _recordings(imported) if r.request.host == "https://api.anthropic.com"]
    assert recordings
    with llm_replay.use_cassette(imported, mode="replay", repeats="sequence") as recorder, httpx.Client() as client:
        for recording in recordings:
            answer = client.post(recording.request.url, json=recording.request.body, headers={"x-api-key": "placeholder"})
            assert (answer.status_code, answer.content) == (recording.response.status, recording.response.body)
    assert recorder.replayed == len(recordings)


def test_exported_yaml_replays_in_vcrpy_through_the_openai_sdk(imported, tmp_path, env):
    assert main(["export", "--cassette", str(imported), "--yaml", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == len(list(REAL_CASSETTES.rglob("*.yaml*"))), "one file per imported source cassette"
    matching = ["method", "scheme", "host", "port", "path", "query", "body"]
    played = 0
    for path in files:
        recordings, skipped = interactions_from_yaml(path, path.name)
        assert not skipped
        if recordings[0].request.host != "https://api.openai.com":
            continue
        with vcr.use_cassette(str(path), record_mode="none", match_on=matching) as cassette:
            for recording in recordings:
                if recording.response.status >= 400:
                    with pytest.raises(openai.APIStatusError):
                        _send_with_openai_sdk(recording)
                elif recording.request.body.get("stream"):
                    assert _send_with_openai_sdk(recording) == _sse_events(recording.response.body), path.name
                else:
                    assert _send_with_openai_sdk(recording) == recording.response.json(), path.name
        assert cassette.play_count == len(recordings) and cassette.all_played
        played += len(recordings)
    assert played >= 40


def test_listing_names_the_model_and_prompt_of_every_provider(imported, capsys):
    recordings = [r for r in _recordings(imported) if "openai" not in r.request.host]
    assert {r.request.host for r in recordings} == {
        "https://api.anthropic.com", "https://generativelanguage.googleapis.com", "https://bedrock-runtime.us-east-1.amazonaws.com",
    }
    for recording in recordings:  # Gemini and Bedrock name the model in the URL path, not in the body
        assert recording.request.model and recording.request.prompt(), recording.request.url
    assert main(["ls", "--cassette", str(imported)]) == 0
    listed = capsys.readouterr().out
    rows = [line for line in listed.splitlines() if "/model/us.amazon.nova-micro-v1%3A0/converse " in line or ":generateContent " in line]
    assert rows and all(("us.amazon.nova-micro-v1:0" in row or " gemini-" in row) and re.search(r"  \((user|model)\) \S", row) for row in rows), rows
