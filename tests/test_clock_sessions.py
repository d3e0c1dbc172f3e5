"""The frozen clock in whole sessions: what a test reads away from its own frame replays too."""

from __future__ import annotations

import freezegun  # noqa: F401
import httpcore2  # noqa: F401
import openai  # noqa: F401
import vcr.patch  # noqa: F401
from conftest import printed

APP = '''
import time
from concurrent.futures import ThreadPoolExecutor

import openai


def stamped_prompt():
    return f"Plan my day. It is {{time.time()}} ({{time.strftime('%A')}})."


def test_prompt_made_in_a_worker_thread(llm_cache):
    with ThreadPoolExecutor(2) as pool:
        prompt = pool.submit(stamped_prompt).result()
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
    print("ANSWER", answer.choices[0].message.content)
    assert str(llm_cache.frozen_at.timestamp()) in prompt, "the worker thread read the test's instant"
'''


def test_a_prompt_made_in_a_worker_thread_replays(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
