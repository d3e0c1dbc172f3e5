"""A strict miss is reported with the test's and the application's own frames, not the SDK's.

pytest renders each frame of a failure from its source; through the openai SDK, httpx and vcrpy
that cost ~0.1 s per failing test, minutes when a changed prompt makes a whole suite miss.
"""

from __future__ import annotations

MISSING_TESTS = '''
import openai


def summarize(text):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": text}}])


def test_summary(llm_cache):
    summarize("never recorded")
'''


def test_miss_shows_own_frames_only_unless_fulltrace(llm_pytester, server, env):
    env.setenv("CI", "true")
    llm_pytester.makepyfile(test_app=MISSING_TESTS.format(base_url=server.base_url))

    result = llm_pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*    summarize(\"never recorded\")",
        "*return client.chat.completions.create(*",
        "E       llm_replay.CassetteMiss: no recording for this request*",
        "E         prompt:    (user) never recorded",
        "test_app.py:6: CassetteMiss",
    ])
    assert "site-packages" not in result.stdout.str()

    full = llm_pytester.runpytest("--fulltrace")
    full.assert_outcomes(failed=1)
    full.stdout.fnmatch_lines(["*site-packages/openai/*", "*site-packages/vcr/stubs/*"])
    assert server.requests == []
