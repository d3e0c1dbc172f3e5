"""Credentials a LangChain model hands the cache (its settings in ``llm_string``, the answer's response headers) stay
out of the cassette, the miss message and the report, through ChatOpenAI over loopback HTTP in whole pytest sessions."""

from __future__ import annotations

import pytest
from conftest import cassette_file

# The values come from a variable whose name says nothing secret (GATEWAY_VALUE), so only the rules by name can hide
# them; a different value in the replay proves lookups are scrubbed too (a rotated gateway token still replays).
APP = '''
import os
import pytest
from pydantic import BaseModel
from langchain_openai import ChatOpenAI

VALUE = os.environ["GATEWAY_VALUE"]


class City(BaseModel):
    name: str


def chat():
    return ChatOpenAI(
        model="gpt-4o-mini", base_url="{base_url}", max_retries=0, include_response_headers=True,
        default_headers={{"X-Gateway-Token": "h" + VALUE, "Ocp-Apim-Subscription-Key": "s" + VALUE}},
        default_query={{"api-version": "2024-10-21", "sig": "q" + VALUE}},
        extra_body={{"token": "b" + VALUE}},
        model_kwargs={{"metadata": {{"client_secret": "m" + VALUE}}}},
    )


@pytest.mark.llm_cache(layer="langchain")
def test_chat(llm_cache):
    print("ANSWER", chat().invoke("{prompt}").content)


@pytest.mark.llm_cache(layer="langchain")
def test_structured(llm_cache):
    try:
        chat().with_structured_output(City, method="function_calling").invoke("Name a city")
    except Exception as error:  # the fake answers no tool call; only the key matters here
        print("STRUCTURED", type(error).__name__)
'''


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


def _secrets(value: str) -> list[str]:
    return [prefix + value for prefix in "hsqbm"]


def test_settings_and_response_headers_never_reach_the_cassette_the_miss_or_the_report(llm_pytester, server, env):
    env.setenv("OPENAI_API_KEY", server.api_key)
    recorded_value, replayed_value = "gw" + "Q7h2Lm9xR4tY8pK3", "gw" + "Z5n1Vb6cX0wE2rT8"
    env.setenv("GATEWAY_VALUE", recorded_value)
    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url, prompt="hi"))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record", "--llm-report=report.html")
    recorded.assert_outcomes(passed=2)
    stored = cassette_file(llm_pytester).read_bytes()
    report = (llm_pytester.path / "report.html").read_text()
    for secret in _secrets(recorded_value):
        assert secret.encode() not in stored and secret not in report, secret
    for account in ("fake-session", "org-fake-account", "proj_fake_project"):  # set-cookie, openai-organization, -project
        assert account.encode() not in stored, account
    assert b"2024-10-21" in stored, "settings that are no credential stay in the key"

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    env.setenv("GATEWAY_VALUE", replayed_value)
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=2)
    assert printed_answers(replayed) == printed_answers(recorded)

    llm_pytester.makepyfile(test_app=APP.format(base_url=server.base_url, prompt="hello"))
    missed = llm_pytester.runpytest("-s", "-k", "test_chat")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(["*CassetteMiss: no recording for this LangChain cache lookup*", "*closest entry*"])
    for secret in _secrets(replayed_value) + _secrets(recorded_value):
        assert secret not in missed.stdout.str(), secret


def printed_answers(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith(("ANSWER", "STRUCTURED"))]
