"""Secrets where the rules by name did not look: credentials in query parameters named as gateways name them (Azure API
Management's ``subscription-key``, ``api_token``, ``auth_token``…), request headers of every credential kind, and a
secret inside a file sent as base64 in a JSON field. The real openai SDK against the loopback fake."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

import llm_replay
from llm_replay.cli import main
from llm_replay.engine.matching import MatchRules, RekeyIndex
from llm_replay.model.fingerprint import CanonicalRequest, canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.sqlite import SQLiteCache

SECRET = "Zq8" + "vT3nLp7Wx2Rk9Bd4Hs6"  # no variable holds it, no key shape: a secret only by where it stands
# Gateways and services that take a credential in the query: Azure API Management, GitLab, token-in-URL proxies.
QUERY_NAMES = ["subscription-key", "Subscription_Key", "api_token", "auth-token", "private_token", "access_key", "secret", "x-api-key", "client_assertion", "session_token", "acme_api_key"]


def _ask(fake, query: dict[str, str], content: str = "hi", **headers: str) -> str:
    client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0, default_query=query, default_headers=headers)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}]).choices[0].message.content


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_a_credential_in_a_query_parameter_named_as_gateways_name_it_is_not_stored_and_any_value_replays(name, server, tmp_path):
    cassette = tmp_path / "c.sqlite3"
    with llm_replay.use_cassette(cassette, mode="record"):
        live = _ask(server, {name: SECRET, "api-version": "2024-10-21"})
    assert SECRET in server.requests[-1]["query"], "the live request carried it"
    assert SECRET.encode() not in cassette.read_bytes()
    assert b"2024-10-21" in cassette.read_bytes(), "a parameter that is no credential stays in the key"
    server.stop()
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert _ask(server, {name: "another-value-in-ci", "api-version": "2024-10-21"}) == live
    assert replaying.replayed == 1


def test_a_recording_keyed_with_such_a_parameter_is_found_again_on_a_miss(tmp_path):
    """Recorded before the name counted as a credential: stored under the key of its query with the parameter (its
    value an environment variable's placeholder), and with that query in its stored request."""
    path = tmp_path / "c.sqlite3"
    asked = canonicalize("POST", f"https://gw.example.com/openai/chat?subscription-key={SECRET}&api-version=1", b'{"q": 1}', "application/json")
    old = CanonicalRequest(asked.method, asked.host, asked.path, (("api-version", "1"), ("subscription-key", "<scrubbed:APIM_KEY>")), asked.body, asked.body_kind)
    cassette = SQLiteCache(path)
    cassette.put(Interaction.of(old, RecordedResponse(200, "OK", {}, b'{"answer": 1}')))
    cassette.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET request = ?", (old.to_json(),))
    cassette = SQLiteCache(path, readonly=True)
    assert cassette.get(asked.fingerprint) is None, "its key is the old one"
    found = RekeyIndex(MatchRules()).find(cassette, asked.fingerprint, 0)
    assert found is not None and found.response.body == b'{"answer": 1}'
    cassette.close()
