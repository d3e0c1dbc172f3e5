"""Requests that differ from a recording only in how they spell equal values, through real SDKs and sessions.

``0`` and ``0.0`` are one JSON number, and ``API.Example.com:443`` is ``api.example.com`` over https: such a request
replays its recording (a second look-up on a miss; no key changes). Unequal values never merge: ``true`` is not ``1``,
``0`` is not ``0.5``, and a strict miss names the field that really differs.
"""

from __future__ import annotations

import pytest
from conftest import printed

SETTINGS_APP = '''
import openai
import pytest

SETTINGS = {settings!r}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_settings(llm_cache, name):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": "Name a colour"}}], **SETTINGS[name]
    )
    print("ANSWER", name, answer.choices[0].message.content)
'''


def _settings_app(pytester: pytest.Pytester, base_url: str, settings: dict[str, dict]) -> None:
    pytester.makepyfile(test_settings=SETTINGS_APP.format(settings=settings, base_url=base_url))


def _answers(result: pytest.RunResult) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in printed(result, "ANSWER"))


def test_a_bool_where_a_number_was_recorded_misses_and_the_diff_names_it(llm_pytester, server, env):
    """``true`` and ``1`` are equal in Python but not in JSON: the miss must show the field, not call the requests
    the same (it said "same request, but not at this occurrence")."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    _settings_app(llm_pytester, server.base_url, {"logprobs": {"logprobs": True}, "count": {"n": 1}})
    llm_pytester.runpytest("-s", "--llm-mode=record").assert_outcomes(passed=2)

    _settings_app(llm_pytester, server.base_url, {"logprobs": {"logprobs": 1}, "count": {"n": True}})
    missed = llm_pytester.runpytest("--llm-mode=replay")
    missed.assert_outcomes(failed=2)
    missed.stdout.fnmatch_lines(["*~ body.logprobs: true -> 1"], consecutive=False)
    missed.stdout.fnmatch_lines(["*~ body.n: 1 -> true"], consecutive=False)
    missed.stdout.no_fnmatch_line("*same request, but not at this occurrence*")
