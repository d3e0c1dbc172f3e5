"""``repeats="sequence"`` when the SDK retries: an answer that is not kept (5xx, 429) must not take a sample's place."""

from __future__ import annotations

import json

import freezegun  # noqa: F401
import httpcore2  # noqa: F401
import openai  # noqa: F401
import pytest
import vcr.patch  # noqa: F401
from conftest import printed

APP = '''
import asyncio
import json

import openai
import pytest

BASE_URL = "{base_url}"
MESSAGES = [{{"role": "user", "content": "Pick a random number"}}]


@pytest.mark.llm_cache(repeats="sequence")
def test_sync_samples(llm_cache):
    client = openai.OpenAI(base_url=BASE_URL, max_retries=2)
    answers = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content for _ in range(3)]
    print("SYNC", json.dumps(answers))


@pytest.mark.llm_cache(repeats="sequence")
def test_async_samples(llm_cache):
    async def samples():
        client = openai.AsyncOpenAI(base_url=BASE_URL, max_retries=2)
        return [(await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)).choices[0].message.content for _ in range(3)]

    print("ASYNC", json.dumps(asyncio.run(samples())))
'''


@pytest.fixture
def app(llm_pytester: pytest.Pytester, server, env) -> pytest.Pytester:
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    return llm_pytester


@pytest.mark.parametrize(("test", "tag", "failures"), [("test_sync_samples", "SYNC", (500, 429)), ("test_async_samples", "ASYNC", (429, 429))])
def test_a_retried_sample_replays_in_its_place(app, server, env, test, tag, failures):
    for status in failures:  # the first sample's first attempts fail; the SDK retries them live while recording
        server.fail_next(status)
    recorded = app.runpytest("-s", "-k", test, "--llm-mode=record")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 3 recorded, 0 missed*"])
    answers = json.loads(printed(recorded, tag)[0])
    assert len(set(answers)) == 3

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = app.runpytest("-s", "-k", test)
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines(["llm_replay: 3 replayed, 0 recorded, 0 missed*"])
    assert json.loads(printed(replayed, tag)[0]) == answers, "each sample replays its own answer, in order"
