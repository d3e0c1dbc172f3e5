"""HTTP libraries a session imports after llm_cache started are intercepted: vcrpy's patches are built without the
ones not imported yet (late_imports.py withholds them, ~150 ms saved with boto3 and requests installed) and rebuilt
when one is imported, in a test body or between tests. vcrpy's package init (its cassettes, PyYAML) waits until a test
uses vcrpy itself."""

from __future__ import annotations

import pytest

from conftest import cassette_file, printed

LATE_APP = '''
import http.client, json, os, sys

REAL_CONNECTION = http.client.HTTPConnection

OPENAI_URL = "{openai_url}"
BEDROCK_URL = "{bedrock_url}"


def chat(prompt):
    return {{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": prompt}}]}}


def headers():
    return {{"Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "unset")}}


def test_none_of_them_imported_yet(llm_cache):
    # vcrpy's patches are built here, for the first llm_cache test: without these, or the rest proves nothing
    assert not {{"requests", "urllib3", "httpx", "httpx2", "openai", "botocore", "boto3"}} & set(sys.modules)
    # nor vcrpy's cassettes and their serializer, which the patches do not need
    assert not {{"vcr.cassette", "vcr.config", "yaml", "wrapt"}} & set(sys.modules)


def test_openai_imported_in_the_test_body(llm_cache):
    import openai  # and httpx2 with it

    client = openai.OpenAI(base_url=OPENAI_URL, api_key=os.environ.get("OPENAI_API_KEY", "unset"), max_retries=0)
    answer = client.chat.completions.create(**chat("asked through openai"))
    print("ANSWER", answer.choices[0].message.content)


def test_requests_imported_in_the_test_body(llm_cache):
    import requests
    import urllib3.connection

    # imported while llm_cache was on: urllib3's own class (vcrpy patches it; its kept original) is built on
    # http.client's own class, not on vcrpy's stub of it
    bases = sys.modules["vcr.patch"]._connHTTPConnection.__mro__
    assert REAL_CONNECTION in bases and not [base for base in bases if base.__module__.startswith("vcr")], bases
    answer = requests.post(OPENAI_URL + "/chat/completions", json=chat("asked through requests"), headers=headers(), timeout=10)
    print("ANSWER", answer.status_code, answer.json()["choices"][0]["message"]["content"])


def test_httpx_imported_where_llm_cache_is_not():
    import httpx  # noqa: F401 (the patches are off here; the next llm_cache test has them with httpx in)


def test_httpx_imported_between_tests(llm_cache):
    import httpx

    answer = httpx.post(OPENAI_URL + "/chat/completions", json=chat("asked through httpx"), headers=headers(), timeout=10)
    print("ANSWER", answer.status_code, answer.json()["choices"][0]["message"]["content"])


def test_boto3_imported_in_the_test_body(llm_cache):
    import boto3

    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=BEDROCK_URL)
    messages = [{{"role": "user", "content": [{{"text": "asked through boto3"}}]}}]
    answer = client.converse(modelId="us.amazon.nova-micro-v1:0", messages=messages)
    print("ANSWER", json.dumps(answer["output"]))


def test_vcrpy_itself_afterwards(tmp_path):
    import vcr

    with vcr.use_cassette(str(tmp_path / "own.yaml"), record_mode="none") as cassette:
        assert isinstance(cassette, vcr.cassette.Cassette) and isinstance(vcr.VCR(), vcr.config.VCR)
'''


def test_libraries_imported_after_llm_cache_started_are_recorded_and_replayed_offline(llm_pytester, server, bedrock_server, aws):
    llm_pytester.makepyfile(test_app=LATE_APP.format(openai_url=server.base_url, bedrock_url=bedrock_server.base_url))
    keys = {"OPENAI_API_KEY": server.api_key, "AWS_ACCESS_KEY_ID": bedrock_server.api_key, "AWS_SECRET_ACCESS_KEY": bedrock_server.secret_key}
    for name, value in keys.items():
        aws.setenv(name, value)
    # a fresh interpreter: this process imported all of them long ago
    recorded = llm_pytester.runpytest_subprocess("-s", "-p", "no:randomly", "--llm-mode=record")
    recorded.assert_outcomes(passed=7)
    recorded.stdout.fnmatch_lines(["llm_replay: 0 replayed, 4 recorded, 0 missed in 5 tests (mode record, *)"])
    answers = printed(recorded, "ANSWER")
    assert len(answers) == 4 and all(answer.startswith("200 ") for answer in answers[1:3]), answers
    served = len(server.requests) + len(bedrock_server.requests)
    assert served == 4, "each call reached its server once while recording"
    stored = cassette_file(llm_pytester).read_bytes()
    assert b"asked through openai" in stored and b"asked through requests" in stored and b"asked through httpx" in stored and b"asked through boto3" in stored

    server.stop()
    bedrock_server.stop()
    for name in keys:
        aws.delenv(name)
    aws.setenv("CI", "true")
    replayed = llm_pytester.runpytest_subprocess("-s", "-p", "no:randomly")
    replayed.assert_outcomes(passed=7)
    replayed.stdout.fnmatch_lines(["llm_replay: 4 replayed, 0 recorded, 0 missed in 5 tests (mode replay, *)"])
    assert printed(replayed, "ANSWER") == answers, "each library got back what it got when recording"

