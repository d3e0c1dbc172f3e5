"""Matching, round two: spellings that share one sample sequence, URLs that are one URL in two spellings, and the
wording of a sequence miss outside pytest; through the real openai SDK over HTTP to the loopback fake."""

from __future__ import annotations

import openai
import pytest

import llm_replay


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

