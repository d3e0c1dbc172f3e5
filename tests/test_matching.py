"""Match rules alone: ignore paths, the normalising hook, re-keying old recordings, and the timestamp hint."""

from __future__ import annotations

import dataclasses
import json
import re

import openai
import pytest

import llm_replay
from llm_replay.engine.explain import explain_miss
from llm_replay.engine.matching import MatchRules, RekeyIndex, parse_ignore_path
from llm_replay.model.fingerprint import CanonicalRequest, canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.memory import InMemoryCache

URL = "https://api.openai.com/v1/chat/completions"


def chat(**body) -> CanonicalRequest:
    body.setdefault("model", "gpt-4o-mini")
    return canonicalize("POST", URL, json.dumps(body).encode(), "application/json")


def stored(request: CanonicalRequest, rules: MatchRules = MatchRules(), recorded_at: str = "2026-01-01T00:00:00+00:00", answer: str = "ok") -> Interaction:
    response = RecordedResponse(status=200, reason="OK", headers={}, body=answer.encode())
    return Interaction.of(request, response, fingerprint=rules.fingerprint(request), recorded_at=recorded_at)


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a[x]", "a[", "a.[0]", "a]b", "a[-1]"])
def test_malformed_paths_name_the_path_the_source_and_the_syntax(path):
    with pytest.raises(ValueError, match=re.escape(f"bad match_ignore path {path!r} in ini option llm_match_ignore: expected dotted JSON body fields")):
        parse_ignore_path(path, "ini option llm_match_ignore")


def test_ignored_fields_leave_the_fingerprint_and_nothing_else():
    rules = MatchRules(("metadata.request_id", "messages[*].name", "tools[*].function.description", "stream_options.*"))
    tools = [{"type": "function", "function": {"name": "search", "description": "v1 wording", "parameters": {}}}]
    first = chat(
        messages=[{"role": "user", "name": "alice", "content": "hi"}],
        metadata={"request_id": "r-1", "app": "demo"},
        tools=tools,
        stream_options={"include_usage": True},
    )
    second = chat(
        messages=[{"role": "user", "name": "bob", "content": "hi"}],
        metadata={"request_id": "r-2", "app": "demo"},
        tools=[{"type": "function", "function": {"name": "search", "description": "v2 wording", "parameters": {}}}],
        stream_options={"include_usage": False},
    )
    assert first.fingerprint != second.fingerprint
    assert rules.fingerprint(first) == rules.fingerprint(second)
    assert rules.view(first).body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"app": "demo"},
        "tools": [{"type": "function", "function": {"name": "search", "parameters": {}}}],
        "stream_options": {},
    }
    assert first.body["metadata"] == {"request_id": "r-1", "app": "demo"}, "the stored request stays whole"
    assert rules.fingerprint(chat(messages=[{"role": "user", "content": "bye"}])) != rules.fingerprint(first)


def test_indexes_and_top_level_lists():
    rules = MatchRules(("messages[0]",))
    with_system = chat(messages=[{"role": "system", "content": "v1"}, {"role": "user", "content": "hi"}])
    other_system = chat(messages=[{"role": "system", "content": "v2"}, {"role": "user", "content": "hi"}])
    assert rules.fingerprint(with_system) == rules.fingerprint(other_system)
    assert rules.view(with_system).body["messages"] == [{"role": "user", "content": "hi"}]

    form = CanonicalRequest("POST", "https://api.openai.com", "/v1/audio/transcriptions", body=[{"name": "file", "filename": "a.wav"}], body_kind="multipart")
    assert MatchRules(("[*].filename",)).view(form).body == [{"name": "file"}]


def test_the_hook_normalises_a_copy_and_must_return_a_request():
    def mask_user(request):
        request.body["user"] = "<user>"
        return request

    rules = MatchRules(before_fingerprint=mask_user)
    alice, bob = chat(user="alice", messages=[]), chat(user="bob", messages=[])
    assert rules.fingerprint(alice) == rules.fingerprint(bob)
    assert alice.body["user"] == "alice", "editing the copy in place never reaches the stored request"
    assert rules.fingerprint(alice) == rules.view(alice).fingerprint == dataclasses.replace(alice, body={**alice.body, "user": "<user>"}).fingerprint

    with pytest.raises(TypeError, match=r"the before_fingerprint hook .*<lambda> returned dict, not a CanonicalRequest; return the request"):
        MatchRules(before_fingerprint=lambda request: request.body).fingerprint(alice)


def test_old_recordings_are_found_again_under_new_rules():
    cassette = InMemoryCache()
    recorded = chat(messages=[{"role": "user", "content": "hi"}], metadata={"request_id": "r-1"})
    cassette.put(stored(recorded))
    asked = chat(messages=[{"role": "user", "content": "hi"}], metadata={"request_id": "r-2"})

    widened = MatchRules(("metadata.request_id",))
    found = RekeyIndex(widened).find(cassette, widened.fingerprint(asked), 0)
    assert found is not None and found.request.body["metadata"] == {"request_id": "r-1"}
    assert RekeyIndex(widened).find(cassette, widened.fingerprint(asked), 1) is None, "occurrences stay distinct"

    # And back: recorded under a rule that is gone, found when the request matches the stored one exactly.
    narrowed_cassette = InMemoryCache()
    narrowed_cassette.put(stored(recorded, widened))
    assert RekeyIndex(MatchRules()).find(narrowed_cassette, recorded.fingerprint, 0) is not None
    assert RekeyIndex(MatchRules()).find(narrowed_cassette, asked.fingerprint, 0) is None


def test_when_old_recordings_collapse_onto_one_key_the_latest_wins():
    cassette = InMemoryCache()
    for day, request_id in ((2, "late"), (1, "early")):
        request = chat(messages=[], metadata={"request_id": request_id})
        cassette.put(stored(request, recorded_at=f"2026-01-0{day}T00:00:00+00:00", answer=request_id))
    rules = MatchRules(("metadata.request_id",))
    found = RekeyIndex(rules).find(cassette, rules.fingerprint(chat(messages=[], metadata={"request_id": "new"})), 0)
    assert found is not None and found.response.body == b"late"


@pytest.mark.parametrize(
    ("recorded", "requested", "hinted", "suggested"),
    [
        ({"content": "It is 2026-11-26T12:00:01.123456 now"}, {"content": "It is 2026-11-27T08:30:00.000001 now"}, True, None),
        ({"content": "Today is Thursday, November 26, 2026 at 3:05 pm"}, {"content": "Today is Friday, 27 Nov 2026 at 10:00 am"}, True, None),
        ({"content": "t=1795696888"}, {"content": "t=1795700000"}, True, None),
        ({"request_id": "2e417000-265c-4848-bc65-9cce4b8d9f34"}, {"request_id": "2299BDDC-16A9-4D24-91B6-5DD4800857B8"}, True, "request_id"),
        ({"content": "It is 2026-11-26, summarise"}, {"content": "It is 2026-11-27, translate"}, False, None),
        ({"content": "What is 2+2?"}, {"content": "What is 3+3?"}, False, None),
    ],
)
def test_the_miss_says_when_only_timestamps_dates_or_uuids_differ(recorded, requested, hinted, suggested):
    cassette = InMemoryCache()
    cassette.put(stored(chat(**recorded)))
    message = explain_miss(chat(**requested), (chat(**requested).fingerprint, 0), cassette, MatchRules(), None)
    assert ("look like timestamps, dates or UUIDs" in message) is hinted
    assert ("match_ignore=[" in message) is (suggested is not None)
    if suggested:
        assert f'@pytest.mark.llm_cache(match_ignore=["{suggested}"])' in message


def test_the_miss_diff_leaves_ignored_fields_out():
    cassette = InMemoryCache()
    rules = MatchRules(("metadata.request_id",))
    cassette.put(stored(chat(messages=[{"role": "user", "content": "hi"}], metadata={"request_id": "a"}), rules))
    asked = chat(messages=[{"role": "user", "content": "hello"}], metadata={"request_id": "b"})
    message = explain_miss(asked, (rules.fingerprint(asked), 0), cassette, rules, None)
    assert '~ body.messages[0].content: "hi" -> "hello"' in message
    assert "request_id" not in message


def test_use_cassette_matches_with_the_same_rules(tmp_path, server):
    path = tmp_path / "cassette.sqlite3"

    def ask(request_id: str) -> str:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], metadata={"request_id": request_id}).id

    with llm_replay.use_cassette(path, mode="record", match_ignore="metadata.request_id"):
        recorded_id = ask("first")
    server.stop()
    with llm_replay.use_cassette(path, mode="replay", match_ignore=["metadata.request_id"]) as recorder:
        assert ask("second") == recorded_id
    assert recorder.replayed == 1
    with pytest.raises(ValueError, match=r"bad match_ignore path 'a\[' in use_cassette\(match_ignore=...\)"):
        with llm_replay.use_cassette(path, mode="replay", match_ignore=["a["]):
            pass
