"""Real Anthropic and Gemini traffic recorded by older SDKs (anthropic with ``?beta=true``, google-genai on
``/v1beta``), imported, then asked again through today's SDKs: a strict miss, ``adopt``, then a clean replay."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
from conftest import printed

from llm_replay.cli import main
from llm_replay.stores.sqlite import SQLiteCache

REAL_CASSETTES = Path(os.environ.get("LLM_REPLAY_REAL_CASSETTES") or Path(__file__).parents[1].parent / "shared" / "real-cassettes")
pytestmark = pytest.mark.skipif(not REAL_CASSETTES.is_dir(), reason=f"real cassettes not found at {REAL_CASSETTES} (they live beside the repository, in ../shared)")

# Today's SDKs send each recorded body again; their URLs differ from what the older SDKs sent.
APP = '''
import json
import anthropic
import pytest
from google import genai

CASES = json.loads(open("cases.json").read())


def send(case):
    body = case["body"]
    if case["provider"] == "anthropic":
        client = anthropic.Anthropic(max_retries=0)
        if body.get("stream"):
            with client.beta.messages.stream(**{{k: v for k, v in body.items() if k != "stream"}}) as stream:
                return stream.get_final_message().model_dump()
        return client.beta.messages.create(**body).model_dump()
    client = genai.Client()  # kept in a variable: a Client closes its HTTP client when garbage-collected
    api = client.models._api_client  # the SDK's own request path: it picks the API version
    if "stream" in case["method"]:
        return [chunk.body for chunk in api.request_streamed("post", f"models/{{case['method']}}?alt=sse", body)]
    return api.request("post", f"models/{{case['method']}}", body).body


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_recorded_by_an_older_sdk(case, llm_cache):
    print("ANSWER", json.dumps(send(case), sort_keys=True, default=str))
'''


def _cases(cassette: Path) -> list[dict]:
    """Every recording an older SDK shaped: Anthropic's ``?beta=true`` and Gemini's ``/v1beta``."""
    store = SQLiteCache(cassette, readonly=True)
    try:
        requests = [interaction.request for interaction in store.interactions()]
    finally:
        store.close()
    cases = []
    for request in requests:
        if request.host == "https://api.anthropic.com" and ("beta", "true") in request.query:
            cases.append({"provider": "anthropic", "body": request.body})
        elif request.path.startswith("/v1beta/models/"):
            cases.append({"provider": "gemini", "method": request.path.split("/models/", 1)[1], "body": request.body})
    return [{**case, "id": f"{case['provider']}-{number}"} for number, case in enumerate(cases)]


def test_real_recordings_of_older_sdks_adopted_by_todays_sdks(llm_pytester, env):
    for sdk in ("anthropic", "google.genai"):
        importlib.import_module(sdk)  # once, not in each inner session
    cassette = llm_pytester.path / "real.sqlite3"
    assert main(["import", "--cassette", str(cassette), str(REAL_CASSETTES)]) == 0
    cases = _cases(cassette)
    assert {case["provider"] for case in cases} == {"anthropic", "gemini"} and len(cases) >= 10
    (llm_pytester.path / "cases.json").write_text(json.dumps(cases))
    llm_pytester.makepyfile(test_app=APP.format())
    env.setenv("CI", "true")  # no key, no network: llm_replay gives the SDKs placeholder keys

    strict = llm_pytester.runpytest(f"--llm-cassette={cassette}")
    strict.assert_outcomes(failed=len(cases))
    strict.stdout.fnmatch_lines([
        "*adopt:     1 recording has the same method, host and body; only the URL differs (an SDK upgrade?)*",
        "*POST https://api.anthropic.com/v1/messages?beta=true → POST https://api.anthropic.com/v1/messages, *",
    ])
    strict.stdout.fnmatch_lines(["*POST https://generativelanguage.googleapis.com/v1beta/models/* → POST https://generativelanguage.googleapis.com/v1/models/*"])

    adopted = llm_pytester.runpytest("-s", f"--llm-cassette={cassette}", "--llm-mode=adopt")
    adopted.assert_outcomes(passed=len(cases))
    anthropic_count = sum(case["provider"] == "anthropic" for case in cases)
    adopted.stdout.fnmatch_lines([
        f"llm_replay: adopted {len(cases)} recordings (re-keyed to the new request shape, written once; commit the cassette):",
        f"  {anthropic_count} × POST https://api.anthropic.com/v1/messages?beta=true → POST https://api.anthropic.com/v1/messages",
    ])

    replayed = llm_pytester.runpytest("-s", f"--llm-cassette={cassette}")
    replayed.assert_outcomes(passed=len(cases))
    assert "llm_replay: adopted" not in replayed.stdout.str()
    answers = printed(replayed, "ANSWER")
    assert answers == printed(adopted, "ANSWER") and all(len(answer) > 100 for answer in answers)
