"""``--llm-mode=adopt``: after an SDK upgrade moves a request to another URL, the recordings are re-keyed once,
offline, and plain replay works again; nothing is re-recorded and nothing else in the cassette changes."""

from __future__ import annotations

import importlib
import json
import sqlite3

import anthropic
import httpx
import pytest
from conftest import cassette_file, printed, write_ini

import llm_replay
from llm_replay.engine.settings import CacheSettings, Mode
from llm_replay.pytest_plugin.suite import Suite

# google-genai asks /v1beta/… when GOOGLE_GENAI_API_VERSION=beta and /v1/… by default: the same request
# shape change as its 2.x → 3.x upgrade, with one installed version.
GEMINI_APP = '''
from google import genai
from google.genai import types

BASE_URL = "{base_url}"


def client():
    global CLIENT  # kept: a Client closes its HTTP client when garbage-collected
    CLIENT = genai.Client(http_options=types.HttpOptions(base_url=BASE_URL))
    return CLIENT


def test_capital(llm_cache):
    print("ANSWER", client().models.generate_content(model="gemini-2.5-flash", contents="What is the capital of France?").text)


def test_stream(llm_cache):
    print("ANSWER", [chunk.text for chunk in client().models.generate_content_stream(model="gemini-2.5-flash", contents="Count to three")])
'''


def _stored_paths(pytester) -> list[str]:
    with sqlite3.connect(cassette_file(pytester)) as db:
        return sorted(row[0] for row in db.execute("SELECT json_extract(request, '$.path') FROM interactions"))


def test_an_sdk_upgrade_misses_then_adopt_rekeys_once_then_plain_replay(llm_pytester, gemini_server, env):
    importlib.import_module("google.genai")  # once, not in each inner session
    llm_pytester.makepyfile(test_app=GEMINI_APP.format(base_url=gemini_server.base_url))
    env.setenv("GOOGLE_API_KEY", gemini_server.api_key)
    env.setenv("GOOGLE_GENAI_API_VERSION", "beta")  # the "old SDK"
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=2)
    old_paths = ["/v1beta/models/gemini-2.5-flash:generateContent", "/v1beta/models/gemini-2.5-flash:streamGenerateContent"]
    assert _stored_paths(llm_pytester) == old_paths

    # The upgrade: the SDK now asks /v1/…; CI has no key and no network.
    gemini_server.stop()
    served = len(gemini_server.requests)
    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_API_VERSION"):
        env.delenv(name)
    env.setenv("CI", "true")
    strict = llm_pytester.runpytest()
    strict.assert_outcomes(failed=2)
    strict.stdout.fnmatch_lines([
        "*adopt:     1 recording has the same method, host and body; only the URL differs (an SDK upgrade?). Run with --llm-mode=adopt*",
        "*POST http://127.0.0.1:*/v1beta/models/gemini-2.5-flash:generateContent → POST http://127.0.0.1:*/v1/models/gemini-2.5-flash:generateContent, recorded * by test_app.py::test_capital",
    ])

    # Adopt one test only: its recording is copied to the new key (the old one stays), the other test's is untouched.
    adopted = llm_pytester.runpytest("-s", "--llm-mode=adopt", "test_app.py::test_capital")
    adopted.assert_outcomes(passed=1)
    adopted.stdout.fnmatch_lines([
        "llm_replay: 1 replayed, 0 recorded, 0 missed in 1 test (mode adopt, *)",
        "llm_replay: adopted 1 recording (re-keyed to the new request shape, written once; commit the cassette):",
        "  1 × POST http://127.0.0.1:*/v1beta/models/gemini-2.5-flash:generateContent → POST http://127.0.0.1:*/v1/models/gemini-2.5-flash:generateContent",
    ])
    assert _stored_paths(llm_pytester) == ["/v1/models/gemini-2.5-flash:generateContent", *old_paths]

    # The whole suite, pruning: every test passed without its old key, so the old keys go.
    everything = llm_pytester.runpytest("-s", "--llm-mode=adopt", "--llm-prune")
    everything.assert_outcomes(passed=2)
    everything.stdout.fnmatch_lines([
        "llm_replay: adopted 1 recording *",
        "  1 × POST *:streamGenerateContent?alt=sse → POST */v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "llm_replay: --llm-prune deleted 2 recordings no longer used by the tests that ran, *",
    ])

    # Afterwards: plain CI replay, the answers the old SDK recorded, and nothing adopted again.
    replayed = llm_pytester.runpytest("-s")
    replayed.assert_outcomes(passed=2)
    assert printed(replayed, "ANSWER") == printed(recorded, "ANSWER")
    assert "llm_replay: adopted" not in replayed.stdout.str()
    assert len(gemini_server.requests) == served, "adopt never went to the network"
    assert _stored_paths(llm_pytester) == ["/v1/models/gemini-2.5-flash:generateContent", "/v1/models/gemini-2.5-flash:streamGenerateContent"]


# One body, recorded by two tests at two URLs; a body field an upgrade changed (metadata.user_id).
RULES_APP = '''
import os
import httpx
import pytest

BASE_URL = "{base_url}"
NEW = os.environ.get("NEW_SDK") == "1"


def ask(text, variant="", user="u1", **added):
    url = BASE_URL + "/v1/messages" + ("" if NEW else "?beta=true" + variant)
    body = {{"model": "claude-x", "max_tokens": 9, "messages": [{{"role": "user", "content": text}}], "metadata": {{"user_id": user}}, **added}}
    answer = httpx.post(url, json=body, headers={{"x-api-key": os.environ["ANTHROPIC_API_KEY"]}})
    assert answer.status_code == 200, answer.text
    return answer.json()["content"][0]["text"]


@pytest.mark.skipif(not NEW, reason="asks only after the upgrade")
@pytest.mark.llm_cache(scope="test")
def test_0_in_memory(llm_cache):  # misses first, in a cassette of its own: the suite cassette's candidates stay found
    ask("shared question")


@pytest.mark.skipif(not NEW, reason="asks only after the upgrade")
def test_0_owns_no_recording(llm_cache):
    ask("shared question")


def test_a(llm_cache):
    print("ANSWER", ask("shared question"))


def test_b(llm_cache):
    print("ANSWER", ask("shared question", variant="&client=b"))


@pytest.mark.llm_cache(adopt_body_paths=["metadata.user_id"])
def test_user_id_may_change(llm_cache):
    print("ANSWER", ask("who am I?", user="u2" if NEW else "u1"))


def test_user_id_must_not_change(llm_cache):
    print("ANSWER", ask("who else?", user="u2" if NEW else "u1"))


def test_new_field_named_in_the_ini(llm_cache):  # the new SDK sends a field the old one did not
    print("ANSWER", ask("which SDK?", **({{"sdk_hint": "v2"}} if NEW else {{}})))
'''


def test_adopt_prefers_the_tests_own_recording_lists_ambiguity_and_adopts_body_changes_only_where_named_by_marker_or_ini(llm_pytester, anthropic_server, env):
    llm_pytester.makepyfile(test_app=RULES_APP.format(base_url=anthropic_server.base_url))
    write_ini(llm_pytester, "llm_adopt_body_paths = sdk_hint")
    env.setenv("ANTHROPIC_API_KEY", anthropic_server.api_key)
    recorded = llm_pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=5, skipped=2)
    answers = printed(recorded, "ANSWER")

    anthropic_server.stop()
    env.setenv("NEW_SDK", "1")
    env.setenv("LLM_REPLAY_MODE", "adopt")
    adopted = llm_pytester.runpytest("-s")
    adopted.assert_outcomes(passed=4, failed=3)
    adopted.stdout.fnmatch_lines([
        # two candidates and neither is this test's: nothing is adopted, both are listed
        "*CassetteMiss: 2 recordings could be adopted for POST http://127.0.0.1:*/v1/messages and none is this test's own (test_app.py::test_0_owns_no_recording); none was adopted:",
        "*POST http://127.0.0.1:*/v1/messages?beta=true → POST http://127.0.0.1:*/v1/messages, recorded * by test_app.py::test_a",
        "*POST http://127.0.0.1:*/v1/messages?beta=true&client=b → POST http://127.0.0.1:*/v1/messages, recorded * by test_app.py::test_b",
    ])
    adopted.stdout.fnmatch_lines([
        # a body difference on a path nobody named is a plain miss in adopt mode
        "*CassetteMiss: no recording for this request (mode 'adopt': the network is not used)",
        "*prompt:    (user) who else?",
    ])
    adopted.stdout.fnmatch_lines([
        "llm_replay: adopted 3 recordings *",
        "  1 × POST http://127.0.0.1:*/v1/messages?beta=true → POST http://127.0.0.1:*/v1/messages",
        "  1 × POST http://127.0.0.1:*/v1/messages?beta=true → POST http://127.0.0.1:*/v1/messages (body: body.metadata.user_id)",
        "  1 × POST http://127.0.0.1:*/v1/messages?beta=true → POST http://127.0.0.1:*/v1/messages (body: body.sdk_hint)",
        # test_b's own old recording and the three old keys adopted from: no test uses them any more, so prune may take
        # them (adopt itself deletes nothing)
        "llm_replay: 4 recordings no longer used by the tests that ran (pytest --llm-prune deletes them)",
    ])
    # test_a took its own recording; after the upgrade test_b asks exactly what test_a asks, so shares its answer
    assert printed(adopted, "ANSWER") == [answers[0], answers[0], answers[2], answers[4]]
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        rows = sorted(db.execute("SELECT json_extract(request, '$.query'), tests FROM interactions"))
    assert rows == sorted([
        ("[]", '["test_app.py::test_a", "test_app.py::test_b"]'),  # test_b replayed it too: it owns it now
        ("[]", '["test_app.py::test_new_field_named_in_the_ini"]'),
        ("[]", '["test_app.py::test_user_id_may_change"]'),
        ('[["beta","true"]]', '["test_app.py::test_user_id_must_not_change"]'),  # a failed adoption leaves it alone
        ('[["beta","true"],["client","b"]]', '["test_app.py::test_b"]'),  # not adopted: nothing lost
        # the keys adopted from stay, for any test still sending them, until --llm-prune
        ('[["beta","true"]]', '["test_app.py::test_a"]'),
        ('[["beta","true"]]', '["test_app.py::test_new_field_named_in_the_ini"]'),
        ('[["beta","true"]]', '["test_app.py::test_user_id_may_change"]'),
    ])


# One body at two URLs, from two tests that both stay: the old endpoint is still called after the new one appears.
TWO_ENDPOINTS_APP = '''
import os
import httpx

BASE_URL = "{base_url}"


def ask(query):
    body = {{"model": "claude-x", "max_tokens": 9, "messages": [{{"role": "user", "content": "the same question"}}]}}
    answer = httpx.post(BASE_URL + "/v1/messages" + query, json=body, headers={{"x-api-key": os.environ["ANTHROPIC_API_KEY"]}})
    assert answer.status_code == 200, answer.text
    return answer.json()["content"][0]["text"]


def test_old_endpoint(llm_cache):
    print("ANSWER", ask("?beta=true"))


def test_new_endpoint(llm_cache):
    print("ANSWER", ask(""))
'''


def test_adopting_another_tests_recording_copies_it_so_that_test_still_replays(llm_pytester, anthropic_server, env):
    """Adopt on one test may only add: the recording it adopts stays under its old key for the test that owns it."""
    llm_pytester.makepyfile(test_app=TWO_ENDPOINTS_APP.format(base_url=anthropic_server.base_url))
    env.setenv("ANTHROPIC_API_KEY", anthropic_server.api_key)
    llm_pytester.runpytest("-s", "--llm-mode=record", "test_app.py::test_old_endpoint").assert_outcomes(passed=1)
    anthropic_server.stop()

    adopted = llm_pytester.runpytest("-s", "--llm-mode=adopt", "test_app.py::test_new_endpoint")
    adopted.assert_outcomes(passed=1)
    adopted.stdout.fnmatch_lines(["llm_replay: adopted 1 recording *"])
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        rows = sorted(db.execute("SELECT json_extract(request, '$.query'), tests FROM interactions"))
    assert rows == sorted([("[]", '["test_app.py::test_new_endpoint", "test_app.py::test_old_endpoint"]'), ('[["beta","true"]]', '["test_app.py::test_old_endpoint"]')])

    replayed = llm_pytester.runpytest("-s", "--llm-mode=replay")
    replayed.assert_outcomes(passed=2)
    assert len(set(printed(replayed, "ANSWER"))) == 1, "both endpoints replay the one recorded answer"


STILL_ASKED_APP = TWO_ENDPOINTS_APP.split("def test_old_endpoint")[0] + '''
def test_1_asks_the_old_endpoint(llm_cache):
    if os.environ.get("STAGE") == "adopt":  # replays what test_2 recorded: not its owner yet
        print("ANSWER", ask("?beta=true"))


def test_2_moves(llm_cache):
    if os.environ.get("STAGE") != "adopt":
        print("ANSWER", ask("?beta=true"))
        return
    if os.environ.get("BOTH"):  # an A/B comparison: this test sends both
        print("ANSWER", ask("?beta=true"))
    print("ANSWER", ask(""))
'''


@pytest.mark.parametrize("asker", ["the adopting test itself", "another test, earlier in the run"])
def test_adopt_keeps_the_old_key_a_test_replayed_in_the_same_run(llm_pytester, anthropic_server, env, asker):
    """Only test_2 owned the recording, so adopt moved it: the request sent under the old key a moment before, by
    test_2 itself or by test_1 (which owns nothing until the run ends), missed in the next strict run."""
    llm_pytester.makepyfile(test_app=STILL_ASKED_APP.format(base_url=anthropic_server.base_url))
    env.setenv("ANTHROPIC_API_KEY", anthropic_server.api_key)
    llm_pytester.runpytest("-s", "--llm-mode=record").assert_outcomes(passed=2)
    anthropic_server.stop()
    env.setenv("STAGE", "adopt")
    if asker == "the adopting test itself":
        env.setenv("BOTH", "1")
        selection = ["test_app.py::test_2_moves"]
    else:
        selection = []
    llm_pytester.runpytest("-s", "--llm-mode=adopt", *selection).assert_outcomes(passed=len(selection) or 2)
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        queries = sorted(query for (query,) in db.execute("SELECT json_extract(request, '$.query') FROM interactions"))
    assert queries == ['[["beta","true"]]', "[]"], "the new key added, the old one kept"
    llm_pytester.runpytest("-s", "--llm-mode=replay").assert_outcomes(passed=2)


def test_xdist_workers_adoptions_add_up_in_the_controllers_summary(tmp_path):
    """Each worker sends its adoptions as plain data (execnet carries only those); the controller lists them all."""
    def suite() -> Suite:
        return Suite(mode=Mode.ADOPT, mode_is_explicit=True, cassette_spec=str(tmp_path / "c.sqlite3"), defaults=CacheSettings(), rootdir=tmp_path)

    moved = "POST h/v1beta/m → POST h/v1/m"
    workers = [suite(), suite()]
    workers[0].adoptions.update({moved: 2})
    workers[1].adoptions.update({moved: 1, "POST h/a?beta=true → POST h/a": 1})
    controller = suite()
    for worker in workers:
        controller.merge_worker(json.loads(json.dumps(worker.worker_report())))
    assert controller.adoption_lines() == [
        "llm_replay: adopted 4 recordings (re-keyed to the new request shape, written once; commit the cassette):",
        "  1 × POST h/a?beta=true → POST h/a",
        f"  3 × {moved}",
    ]


@pytest.mark.parametrize(
    "mode, offline, fails_on_miss, read_only",
    [
        (Mode.REPLAY, True, True, True),
        (Mode.ADOPT, True, True, False),  # never live, but writes the re-keyed recordings
        (Mode.VERIFY, False, True, True),  # calls live to compare, writes nothing
        (Mode.RECORD, False, False, False),
        (Mode.REFRESH, False, False, False),
    ],
)
def test_the_modes_table_network_misses_and_writes(mode, offline, fails_on_miss, read_only):
    """The three questions the layers ask of a mode, as the modes table in README.md answers them."""
    assert (mode.offline, mode.fails_on_miss, mode.read_only) == (offline, fails_on_miss, read_only)


def test_use_cassette_adopts_outside_pytest(anthropic_server, env, tmp_path):
    """A script recorded ``?beta=true`` (as anthropic < 2.3 sent it); the upgraded SDK's request is adopted, then replays."""
    cassette = tmp_path / "script.sqlite3"
    body = {"max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}], "model": "claude-x"}
    with llm_replay.use_cassette(cassette, mode="record"):
        old = httpx.post(f"{anthropic_server.base_url}/v1/messages?beta=true", json=body, headers={"x-api-key": anthropic_server.api_key}).json()
    anthropic_server.stop()

    def ask() -> str:
        return anthropic.Anthropic(base_url=anthropic_server.base_url, max_retries=0).messages.create(**body).content[0].text

    with pytest.raises(llm_replay.CassetteMiss, match="Run with --llm-mode=adopt"), llm_replay.use_cassette(cassette, mode="replay"):
        ask()
    with llm_replay.use_cassette(cassette, mode="adopt") as adopting:
        assert ask() == old["content"][0]["text"]
    assert [change.split(" → ")[1] for change in adopting.adoptions] == [f"POST {anthropic_server.base_url}/v1/messages"]
    with llm_replay.use_cassette(cassette, mode="replay") as replaying:
        assert ask() == old["content"][0]["text"]
    assert (replaying.replayed, replaying.missed, len(anthropic_server.requests)) == (1, 0, 1)


def test_a_second_upgrade_before_pruning_adopts_the_copies_of_one_answer_as_one(anthropic_server, env, tmp_path):
    """Adopt keeps the key it copies from: after two URL changes without a prune, both earlier keys hold the one
    answer. They are not two candidates to choose between (that would fail as ambiguous); any of them is the answer."""
    cassette = tmp_path / "script.sqlite3"
    body = {"max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}], "model": "claude-x"}

    def ask(query: str, mode: str) -> str:
        with llm_replay.use_cassette(cassette, mode=mode):
            answer = httpx.post(f"{anthropic_server.base_url}/v1/messages{query}", json=body, headers={"x-api-key": anthropic_server.api_key})
        return answer.json()["content"][0]["text"]

    recorded = ask("?beta=true", "record")
    anthropic_server.stop()
    assert ask("?v=2", "adopt") == recorded
    assert ask("", "adopt") == recorded  # candidates: ?beta=true and its copy under ?v=2
    assert [ask(query, "replay") for query in ("?beta=true", "?v=2", "")] == [recorded] * 3
