"""Requests that differ from a recording only in how they spell equal values, through real SDKs and sessions.

``0`` and ``0.0`` are one JSON number, and ``API.Example.com:443`` is ``api.example.com`` over https: such a request
replays its recording (a second look-up on a miss; no key changes). Unequal values never merge: ``true`` is not ``1``,
``0`` is not ``0.5``, and a strict miss names the field that really differs.
"""

from __future__ import annotations

import json
import math

import openai
import pytest
import yaml
from conftest import cassette_file, printed
from hypothesis import given, settings
from hypothesis import strategies as st

import llm_replay
from llm_replay.cli import main
from llm_replay.engine.matching import MatchRules, RekeyIndex
from llm_replay.model.fingerprint import CanonicalRequest, canonicalize, differences, distance, respelled
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.memory import InMemoryCache

URL = "https://api.openai.com/v1/chat/completions"

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


RECORDED_SETTINGS = {
    "zero": {"temperature": 0, "max_tokens": 100},
    "half": {"temperature": 0.5, "max_tokens": 100},
    "one": {"temperature": 1.0, "top_p": 1.0},
    "seed": {"seed": 10000000000000001},
    "logprobs": {"logprobs": True},
}
RESPELLED_SETTINGS = {
    "zero": {"temperature": 0.0, "max_tokens": 100.0},  # what an SDK upgrade or a refactor may send
    "negative_zero": {"temperature": -0.0, "max_tokens": 100},
    "half": {"temperature": 0.5, "max_tokens": 100.0},  # beside a recording at 0: must get its own answer
    "one": {"temperature": 1, "top_p": 1},
    "quarter": {"temperature": 0.25, "max_tokens": 100},  # between two recordings: equal to neither
    "seed": {"seed": 1e16},  # the nearest float to 10000000000000001, not equal to it
    "logprobs": {"logprobs": 1},  # 1 is not true
}


def test_numbers_spelled_otherwise_replay_their_recording_and_unequal_ones_miss(llm_pytester, server, env):
    """0 / 0.0 / -0.0, 1 / 1.0, 100 / 100.0 replay the recording, in replay and in record mode (no live call);
    0.25 beside recordings at 0 and 0.5, 1e16 beside 10000000000000001 and 1 beside true miss, naming the field."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    _settings_app(llm_pytester, server.base_url, RECORDED_SETTINGS)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=5)
    first = _answers(recorded)
    assert len(set(first.values())) == 5, "each setting was its own live call"

    _settings_app(llm_pytester, server.base_url, RESPELLED_SETTINGS)
    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=4, failed=3)
    assert _answers(replayed) == {"zero": first["zero"], "negative_zero": first["zero"], "half": first["half"], "one": first["one"]}
    replayed.stdout.fnmatch_lines(["*~ body.temperature: * -> 0.25"], consecutive=False)
    replayed.stdout.fnmatch_lines(["*~ body.seed: 10000000000000001 -> 1e+16"], consecutive=False)
    replayed.stdout.fnmatch_lines(["*~ body.logprobs: true -> 1"], consecutive=False)
    replayed.stdout.fnmatch_lines(["llm_replay: 4 replayed, 0 recorded, 3 missed in 7 tests*"])

    calls = len(server.requests)
    again = llm_pytester.runpytest("-s", "--llm-mode=record", "-k", "zero or half or one")
    again.assert_outcomes(passed=4)
    assert len(server.requests) == calls, "a respelled request is no new question: nothing is asked live"
    again.stdout.fnmatch_lines(["llm_replay: 4 replayed, 0 recorded, 0 missed in 4 tests*"])


HOSTS_APP = '''
import json
import urllib.request

import openai

PORT = {port}
KEY = "{api_key}"


def ask(host, via, prompt):
    """A chat call through the openai SDK (httpx, which writes the host in lower case) or urllib (http.client, which
    keeps it as given)."""
    if via == "sdk":
        client = openai.OpenAI(base_url=f"http://{{host}}:{{PORT}}/v1", api_key=KEY, max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
        return answer.choices[0].message.content
    body = json.dumps({{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": prompt}}]}}).encode()
    headers = {{"Content-Type": "application/json", "Authorization": f"Bearer {{KEY}}"}}
    request = urllib.request.Request(f"http://{{host}}:{{PORT}}/v1/chat/completions", data=body, headers=headers)
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())["choices"][0]["message"]["content"]


def test_upper(llm_cache):
    print("ANSWER upper", ask(*{upper}))


def test_lower(llm_cache):
    print("ANSWER lower", ask(*{lower}))
'''


def _hosts_app(pytester: pytest.Pytester, server, upper: tuple[str, str, str], lower: tuple[str, str, str]) -> None:
    port = server.base_url.split(":")[2].split("/")[0]
    pytester.makepyfile(test_hosts=HOSTS_APP.format(port=port, api_key=server.api_key, upper=upper, lower=lower))


def test_a_host_spelled_in_another_case_replays_its_recording(llm_pytester, server, env):
    """urllib keeps ``LocalHost`` as written, the SDKs send ``localhost``: one host (DNS names have no case)."""
    _hosts_app(llm_pytester, server, upper=("LocalHost", "urllib", "Upper"), lower=("localhost", "sdk", "Lower"))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)

    server.stop()
    _hosts_app(llm_pytester, server, upper=("localhost", "sdk", "Upper"), lower=("LOCALHOST", "urllib", "Lower"))
    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=2)
    assert _answers(replayed) == _answers(recorded) and len(_answers(recorded)) == 2


def test_a_miss_names_what_differs_not_how_the_host_is_spelled(llm_pytester, server, env):
    """The closest recording is the one on the same host in another case, and the diff shows the prompt only."""
    _hosts_app(llm_pytester, server, upper=("LocalHost", "urllib", "Capital of France?"), lower=("localhost", "sdk", "Colour of the sky?"))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)

    _hosts_app(llm_pytester, server, upper=("localhost", "sdk", "Capital of Spain?"), lower=("localhost", "sdk", "Colour of the sky?"))
    missed = llm_pytester.runpytest("--llm-mode=replay")
    missed.assert_outcomes(passed=1, failed=1)
    missed.stdout.fnmatch_lines([
        "*closest recording: POST http://LocalHost:*/v1/chat/completions, recorded * by test_hosts.py::test_upper*",
        '*~ body.messages[[]0].content: "Capital of France?" -> "Capital of Spain?"',
        "*to record it:*",
    ])
    missed.stdout.no_fnmatch_line("*~ host:*")


IMPORTED_APP = '''
import openai
import pytest


@pytest.mark.parametrize("base_url", ["https://api.example.test/v1", "https://api.example.test:8443/v1"])
def test_capital(llm_cache, base_url):
    client = openai.OpenAI(base_url=base_url, api_key="any", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France?"}])
    print("ANSWER", answer.choices[0].message.content)
'''


def test_an_imported_recording_with_a_default_port_and_a_capital_host_replays(llm_pytester, tmp_path):
    """A vcrpy cassette written by another client may keep ``:443`` and the host as configured; httpx drops the port
    and lowers the host. Another port is another server: it still misses."""
    answer = {"id": "c-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris"}}]}
    request = {"method": "POST", "uri": "https://API.Example.test:443/v1/chat/completions", "headers": {"Content-Type": ["application/json"]},
               "body": json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of France?"}]})}
    response = {"status": {"code": 200, "message": "OK"}, "headers": {"Content-Type": ["application/json"]}, "body": {"string": json.dumps(answer)}}
    source = tmp_path / "capital.yaml"
    source.write_text(yaml.safe_dump({"version": 1, "interactions": [{"request": request, "response": response}]}))
    assert main(["import", "--cassette", str(cassette_file(llm_pytester)), str(source)]) == 0

    llm_pytester.makepyfile(test_imported=IMPORTED_APP)
    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=1, failed=1)
    assert printed(replayed, "ANSWER") == ["Paris"]
    replayed.stdout.fnmatch_lines(['*~ host: "https://API.Example.test:443" -> "https://api.example.test:8443"'], consecutive=False)


UPGRADED_APP = '''
import openai


def test_summary(llm_cache):
    client = openai.OpenAI(base_url="{base_url}", default_query={query!r}, max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Summarise"}}], temperature={temperature!r})
    print("ANSWER", answer.choices[0].message.content)
'''


def test_adopt_takes_an_upgrade_that_moved_the_url_and_respelled_a_number(llm_pytester, server, env):
    """An SDK upgrade that drops ``?beta=true`` and sends ``temperature: 0.0`` for ``0`` asks the same question."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_summary=UPGRADED_APP.format(base_url=server.base_url, query={"beta": "true"}, temperature=0))
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=1)

    llm_pytester.makepyfile(test_summary=UPGRADED_APP.format(base_url=server.base_url, query={}, temperature=0.0))
    missed = llm_pytester.runpytest("--llm-mode=replay")
    missed.assert_outcomes(failed=1)
    missed.stdout.fnmatch_lines(["*adopt:     1 recording has the same method, host and body; only the URL differs*"])
    adopted = llm_pytester.runpytest("-s", "--llm-mode=adopt")
    adopted.assert_outcomes(passed=1)
    assert printed(adopted, "ANSWER") == printed(recorded, "ANSWER")
    adopted.stdout.fnmatch_lines(["llm_replay: adopted 1 recording*", "*1 × POST *?beta=true → POST */v1/chat/completions"])


# -- the second look-up alone ------------------------------------------------------------------------------------


def _chat(url: str = URL, **body) -> CanonicalRequest:
    return canonicalize("POST", url, json.dumps({"model": "gpt-4o-mini", "messages": [], **body}).encode(), "application/json")


def _store(*requests: CanonicalRequest, rules: MatchRules = MatchRules()) -> InMemoryCache:
    cassette = InMemoryCache()
    for number, request in enumerate(requests):
        response = RecordedResponse(status=200, reason="OK", headers={}, body=f"answer {number}".encode())
        cassette.put(Interaction.of(request, response, fingerprint=rules.fingerprint(request), recorded_at=f"2026-01-0{number + 1}T00:00:00+00:00"))
    return cassette


def _found(cassette: InMemoryCache, asked: CanonicalRequest, rules: MatchRules = MatchRules(), occurrence: int = 0) -> str | None:
    found = RekeyIndex(rules).find(cassette, rules.fingerprint(asked), occurrence, asked)
    return found.response.body.decode() if found is not None else None


def test_the_second_look_up_finds_equal_numbers_only():
    cassette = _store(_chat(temperature=0), _chat(temperature=0.5), _chat(top_p=1.0), _chat(logprobs=True), _chat(seed=2**60 + 1))
    assert _found(cassette, _chat(temperature=0.0)) == "answer 0"
    assert _found(cassette, _chat(temperature=-0.0)) == "answer 0"
    assert _found(cassette, _chat(temperature=0.5)) is None, "a key that is stored is no miss: nothing to find again"
    assert _found(cassette, _chat(temperature=0.25)) is None
    assert _found(cassette, _chat(top_p=1)) == "answer 2", "the recording spells the float: found by its plain key"
    assert _found(cassette, _chat(logprobs=1)) is None and _found(cassette, _chat(logprobs=1.0)) is None
    assert _found(cassette, _chat(seed=float(2**60 + 1))) is None, "the float nearest 2**60 + 1 is 2**60"
    assert _found(cassette, _chat(temperature=0.0), occurrence=1) is None, "occurrences stay distinct"


def test_the_second_look_up_also_finds_what_other_rules_recorded():
    rules = MatchRules(("metadata.request_id",))
    cassette = _store(_chat(temperature=1.0, metadata={"request_id": "r-1"}))
    assert _found(cassette, _chat(temperature=1, metadata={"request_id": "r-2"}), rules) == "answer 0"
    assert _found(cassette, _chat(temperature=2, metadata={"request_id": "r-2"}), rules) is None


@pytest.mark.parametrize(
    ("recorded", "asked", "found"),
    [
        ("https://api.openai.com", "https://API.OpenAI.com:443", True),
        ("https://API.OpenAI.com:443", "https://api.openai.com", True),
        ("http://LOCALHOST:80", "http://localhost", True),
        ("http://[::1]:80", "http://[::1]", True),
        ("https://api.openai.com", "https://api.openai.com:8443", False),
        ("https://api.openai.com:80", "https://api.openai.com", False),  # 80 is not https's default port
        ("http://api.openai.com", "https://api.openai.com", False),
        ("https://Alice@api.openai.com", "https://alice@api.openai.com", False),  # the user part keeps its case
    ],
)
def test_the_second_look_up_finds_a_host_spelled_otherwise(recorded, asked, found):
    cassette = _store(_chat(url=recorded + "/v1/chat/completions"))
    assert (_found(cassette, _chat(url=asked + "/v1/chat/completions")) == "answer 0") is found


def test_a_stored_request_without_a_host_text_does_not_break_the_second_look_up():
    """A row edited by hand (``"host": null``) is read as it is: the first miss still builds the index."""
    odd = CanonicalRequest(method="POST", host=None, path="/v1/chat/completions", body={"temperature": 1.0}, body_kind="json")  # type: ignore[arg-type]
    cassette = _store(odd, _chat(temperature=1.0))
    assert _found(cassette, _chat(temperature=1)) == "answer 1"
    assert differences(odd, _chat()) and distance(odd, _chat()) >= 1000


def _json_equal(first: object, second: object) -> bool:
    """Equal as JSON values: numbers by value (NaN equal to itself, as the fingerprint has it), a bool only to a bool."""
    if isinstance(first, bool) or isinstance(second, bool):
        return type(first) is type(second) and first == second
    if isinstance(first, (int, float)) and isinstance(second, (int, float)):
        return first == second or (first != first and second != second)
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_json_equal(first[key], second[key]) for key in first)
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(_json_equal(a, b) for a, b in zip(first, second))
    return type(first) is type(second) and first == second


def _variant(value: object, draw: st.DataObject) -> object:
    """``value`` with some numbers changed a little: an int written as the float equal to it (the same value), a
    number moved to the next float or a bool swapped for the equal number (other values)."""
    if isinstance(value, dict):
        return {key: _variant(item, draw) for key, item in value.items()}
    if isinstance(value, list):
        return [_variant(item, draw) for item in value]
    if not isinstance(value, (int, float)):
        return value
    change = draw.draw(st.sampled_from(["keep", "float", "next", "bool"]))
    if change == "float" and type(value) is int and float(value) == value:
        return float(value)
    if change == "next" and type(value) is not bool:
        if type(value) is float:
            return math.nextafter(value, math.inf)
        return value + draw.draw(st.sampled_from([0.5, 1])) if abs(value) < 2**52 else value + 1
    if change == "bool" and value in (0, 1):
        return int(value) if type(value) is bool else bool(value)
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from([0, 1, -0.0, 0.0, 1.0, 1e16, 2**53 + 1, 10**20]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(json_values, json_values, st.data())
def test_two_bodies_respell_alike_exactly_when_their_values_are_equal(first, other, data):
    second = data.draw(st.sampled_from([other, _variant(first, data)]))
    alike = respelled(_chat(body=first)).fingerprint == respelled(_chat(body=second)).fingerprint
    assert alike == _json_equal(first, second)


def test_use_cassette_replays_a_respelled_request_outside_pytest(server, env, tmp_path):
    """A script's ``use_cassette`` block finds the recording again as a test's ``llm_cache`` does."""
    cassette = tmp_path / "script.sqlite3"

    def ask(mode: str, temperature: float) -> str:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        with llm_replay.use_cassette(cassette, mode=mode):
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=temperature)
        return answer.choices[0].message.content

    recorded = ask("record", 1)
    assert ask("replay", 1.0) == recorded
    with pytest.raises(llm_replay.CassetteMiss, match=r"~ body.temperature: 1 -> 1.5"):
        ask("replay", 1.5)
