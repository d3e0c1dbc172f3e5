"""Pruning by ownership: whatever the selection, only what the tests that ran passed without is deleted;
a prune racing a recording session keeps that session's recordings; a refresh replaces its test's recordings."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import cassette_file

from llm_replay.cli import main

# Every test asks one prompt, "<APP_VERSION> <its node name>": a new version gives each test a new recording.
CONFTEST = '''
import os

import openai
import pytest


@pytest.fixture
def ask(llm_cache, request):
    def ask():
        if os.environ.get("FAIL") == request.node.name:
            raise AssertionError("asked to fail")
        client = openai.OpenAI(base_url="{base_url}", max_retries=0)
        prompt = f"{{os.environ['APP_VERSION']}} {{request.node.name}}"
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}])
    return ask
'''
TOP = '''
import pytest


def test_a(ask):
    ask()


def test_b(ask):
    ask()


class TestK:
    def test_k1(self, ask):
        ask()

    def test_k2(self, ask):
        ask()


@pytest.mark.parametrize("p", ["x", "y"])
def test_p(ask, p):
    ask()


@pytest.mark.slow
def test_m(ask):
    ask()
'''
SUB = '''
def test_s1(ask):
    ask()


def test_s2(ask):
    ask()
'''
EVERY = {"test_a", "test_b", "test_k1", "test_k2", "test_p[x]", "test_p[y]", "test_m", "test_s1", "test_s2"}
# selection (cwd under the project, pytest arguments) -> the tests whose v1 recording --llm-prune may delete
SELECTIONS = {
    "node id": ("", ("test_top.py::test_a",), {"test_a"}),
    "class": ("", ("test_top.py::TestK",), {"test_k1", "test_k2"}),
    "parametrize id": ("", ("test_top.py::test_p[x]",), {"test_p[x]"}),
    "directory": ("", ("sub",), {"test_s1", "test_s2"}),
    "from a subdirectory": ("sub", (), {"test_s1", "test_s2"}),
    "-k": ("", ("-k", "test_b or k1"), {"test_b", "test_k1"}),
    "-m": ("", ("-m", "slow"), {"test_m"}),
    "--deselect": ("", ("--deselect", "test_top.py::test_a"), EVERY - {"test_a"}),
    "--lf": ("", ("--lf",), {"test_b"}),
    "xdist": ("", ("-p", "xdist", "-n", "2", "test_top.py::TestK"), {"test_k1", "test_k2"}),
    "--pyargs node id": ("", ("--pyargs", "test_top::test_a"), {"test_a"}),  # a module name, not a path
    "node id under a symlinked folder": ("", ("sub/test_sub.py::test_s1",), {"test_s1"}),  # sub links outside the rootdir
}


@pytest.fixture
def project(llm_pytester: pytest.Pytester, server, env) -> pytest.Pytester:
    """Nine tests recorded once under APP_VERSION=v1, then asking v2 prompts (each v1 recording is now unused)."""
    llm_pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers = slow\n")
    llm_pytester.makeconftest(CONFTEST.format(base_url=server.base_url))
    llm_pytester.makepyfile(test_top=TOP)
    (llm_pytester.path / "sub").mkdir()
    (llm_pytester.path / "sub" / "test_sub.py").write_text(SUB)
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("APP_VERSION", "v1")
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=9)
    env.setenv("APP_VERSION", "v2")
    return llm_pytester


def surviving_v1(cassette: Path) -> set[str]:
    with sqlite3.connect(cassette) as db:
        prompts = [row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")]
    return {prompt.split(" ", 1)[1] for prompt in prompts if prompt.startswith("v1 ")}


def test_llm_prune_deletes_only_what_the_selected_tests_passed_without(project, env, capsys):
    cassette = cassette_file(project)
    saved = project.path.parent / "saved"
    shutil.copytree(project.path, saved)
    kept_counts = {}
    for form, (cwd, args, selected) in SELECTIONS.items():
        shutil.rmtree(project.path)
        shutil.copytree(saved, project.path)
        env.chdir(project.path / cwd)
        if form == "node id under a symlinked folder":
            elsewhere = project.path.parent / "elsewhere"
            shutil.rmtree(elsewhere, ignore_errors=True)
            shutil.move(project.path / "sub", elsewhere)
            (project.path / "sub").symlink_to(elsewhere, target_is_directory=True)
        if form == "--lf":
            env.setenv("FAIL", "test_b")
            project.runpytest("-k", "test_b").assert_outcomes(failed=1)
            env.delenv("FAIL")
        result = project.runpytest("--llm-prune", *args)
        assert result.ret == 0, f"{form}: {result.stdout.str()}"
        assert surviving_v1(cassette) == EVERY - selected, f"{form}: the v1 recordings of exactly the selected tests are gone"
        result.stdout.fnmatch_lines([f"llm_replay: --llm-prune deleted {len(selected)} recording* no longer used by the tests that ran, *"])
        capsys.readouterr()
        assert main(["prune"]) == 0, f"{form}: a later llm-replay prune, from the same directory"
        assert capsys.readouterr().out.startswith("deleted 0 recordings"), f"{form}: the run was remembered as what it was, not a whole-suite run"
        assert surviving_v1(cassette) == EVERY - selected
        kept_counts[form] = len(EVERY - selected)
    with capsys.disabled():
        print("\nv1 recordings kept of 9, per selection form:", kept_counts)


def test_a_replay_prune_of_a_class_keeps_a_recording_no_test_owns(project, env):
    """A run that writes nothing reads only owned recordings at its end: an unowned one (imported, or recorded
    outside a test) is neither counted nor deleted, and the selection's own unused recordings still go."""
    project.runpytest("--llm-mode=record").assert_outcomes(passed=9)  # v2 answers: every v1 one is unused now
    cassette = cassette_file(project)
    columns = "occurrence, request, status, reason, headers, body, recorded_at, model, input_tokens, output_tokens, latency_ms"
    with sqlite3.connect(cassette) as db:
        db.execute(
            f"INSERT INTO interactions (fingerprint, {columns}, tests) SELECT 'unowned' || fingerprint, {columns}, '[]' FROM interactions "
            "WHERE json_extract(request, '$.body.messages[0].content') = 'v2 test_a'"
        )
    result = project.runpytest("--llm-mode=replay", "--llm-prune", "test_top.py::TestK")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["llm_replay: 2 recordings no longer used by the tests that ran", "llm_replay: --llm-prune deleted 2 recordings *"])
    assert surviving_v1(cassette) == EVERY - {"test_k1", "test_k2"}
    with sqlite3.connect(cassette) as db:
        assert db.execute("SELECT tests FROM interactions WHERE fingerprint LIKE 'unowned%'").fetchall() == [("[]",)]


def vcr_yaml(path: Path, prompt: str) -> Path:
    """A vcrpy format-1 cassette (as a project migrating from vcrpy has them) with one chat answer from 2024."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
    answer = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "imported"}}]})
    interaction = {
        "request": {"method": "POST", "uri": "https://api.openai.com/v1/chat/completions", "body": body, "headers": {"Content-Type": ["application/json"]}},
        "response": {"status": {"code": 200, "message": "OK"}, "headers": {"Content-Type": ["application/json"], "Date": ["Tue, 01 Oct 2024 10:00:00 GMT"]},
                     "body": {"string": answer}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "interactions": [interaction]}))
    return path


def test_imported_recordings_are_never_pruned_even_when_their_source_file_is_gone(project, env, capsys):
    """Import stores each recording's source YAML as its owner; no test owns it, so only ``llm-replay rm`` deletes it:
    not when the migrated folder is removed, nor when the import ran from a subdirectory (its path is not rootdir's)."""
    cassette = cassette_file(project)
    vcr_yaml(project.path / "vcr_cassettes" / "test_top.yaml", "imported from the top")
    vcr_yaml(project.path / "sub" / "vcr" / "test_sub.yaml", "imported from sub")
    assert main(["import", "--cassette", str(cassette), "vcr_cassettes"]) == 0
    env.chdir(project.path / "sub")
    assert main(["import", "--cassette", str(cassette), "vcr"]) == 0
    env.chdir(project.path)
    shutil.rmtree(project.path / "vcr_cassettes")  # migrated: the YAML is no longer needed

    def imported() -> set[str]:
        with sqlite3.connect(cassette) as db:
            return {row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions WHERE tests NOT LIKE '%::%'")}

    assert imported() == {"imported from the top", "imported from sub"}
    project.runpytest("--llm-prune").assert_outcomes(passed=9)  # every test passes without its v1 recording: those go
    assert surviving_v1(cassette) == set()
    capsys.readouterr()
    assert main(["prune", "--cassette", str(cassette)]) == 0
    assert capsys.readouterr().out.startswith("deleted 0 recordings"), "an import's owner is no test, gone or not"
    assert imported() == {"imported from the top", "imported from sub"}


def test_a_prune_racing_a_recording_session_keeps_what_that_session_records(project, server, env):
    """The pruning run starts first and finishes last; the other session records 9 new answers in between."""
    started, gate = project.path / "STARTED", project.path / "RECORDED"
    project.makepyfile(test_0gate=f'''
import pathlib
import time


def test_waits_for_the_other_session():
    pathlib.Path({str(started)!r}).write_text("started")
    deadline = time.monotonic() + 120
    while not pathlib.Path({str(gate)!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
''')
    pruning = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--llm-prune", "--llm-mode=replay"],
        cwd=project.path, env={**os.environ, "APP_VERSION": "v1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and pruning.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the pruning session never started"
        recording = project.runpytest("--llm-mode=record", "--deselect", "test_0gate.py::test_waits_for_the_other_session")
        recording.assert_outcomes(passed=9)
        recording.stdout.fnmatch_lines(["llm_replay: 0 replayed, 9 recorded, 0 missed in 9 tests*"])
    finally:
        gate.write_text("done")
        out, _ = pruning.communicate(timeout=300)
    assert pruning.returncode == 0, out
    assert "llm_replay: --llm-prune deleted 0 recordings" in out
    with sqlite3.connect(cassette_file(project)) as db:
        prompts = {row[0] for row in db.execute("SELECT json_extract(request, '$.body.messages[0].content') FROM interactions")}
    assert prompts == {f"{version} {name}" for version in ("v1", "v2") for name in EVERY}, "both sessions' recordings survive"


SHARED = """
import openai


def ask_shared():
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "shared"}}])


def test_one(llm_cache):
    ask_shared()


def test_two(llm_cache):
    ask_shared()
"""


def test_a_passing_refresh_replaces_what_the_test_owned_even_under_a_new_key(project, server):
    project.makepyfile(test_shared=SHARED.format(base_url=server.base_url))
    project.runpytest("--llm-mode=record", "test_shared.py").assert_outcomes(passed=2)
    result = project.runpytest("--llm-mode=refresh", "test_top.py::test_a", "test_top.py::test_b", "test_shared.py::test_one")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["llm_replay: refresh replaced 2 earlier recordings of the refreshed tests"])
    assert surviving_v1(cassette_file(project)) == EVERY - {"test_a", "test_b"}, "the other tests' recordings are untouched"
    with sqlite3.connect(cassette_file(project)) as db:
        owners = dict(db.execute("SELECT json_extract(request, '$.body.messages[0].content'), tests FROM interactions"))
    assert owners["shared"] == '["test_shared.py::test_one", "test_shared.py::test_two"]', "a shared answer stays for its other owner"
    assert owners["v2 test_a"] == '["test_top.py::test_a"]'


REKEYED = """
import os

import openai


def test_ask(llm_cache):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "rekeyed"}}],
                                   extra_body={{"request_id": os.environ["REQUEST_ID"]}})
"""


def test_a_recording_replayed_under_new_match_rules_is_used_not_pruned(llm_pytester, server, env):
    llm_pytester.makepyfile(test_rekeyed=REKEYED.format(base_url=server.base_url))
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("REQUEST_ID", "first")
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    llm_pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nllm_match_ignore = request_id\n")
    env.setenv("REQUEST_ID", "second")  # matches the old recording only under the new rule, through its old key
    result = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["llm_replay: 1 replayed, 0 recorded, 0 missed*", "llm_replay: --llm-prune deleted 0 recordings*"])
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        assert db.execute("SELECT count(*) FROM interactions").fetchone() == (1,)


FALLBACK = """
import openai


def summarize(text):
    try:
        client = openai.OpenAI(base_url="{base_url}", max_retries=0)
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": text}}]).choices[0].message.content
    except openai.APIError:  # the app's own fallback while the API is down
        return text[:5]


def test_summary(llm_cache):
    assert summarize("hello world")
"""


@pytest.mark.parametrize("status", [500, 429])
def test_a_refresh_that_met_a_server_error_replaces_nothing(llm_pytester, server, env, status):
    """The 5xx is not recorded, as documented; the passing test then owned nothing new, and its refresh deleted the
    good recording it had, so the next strict run missed."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=FALLBACK.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=1)
    server.fail_next(status)
    refreshed = llm_pytester.runpytest("--llm-mode=refresh")
    refreshed.assert_outcomes(passed=1)
    assert "refresh replaced" not in refreshed.stdout.str()
    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest().assert_outcomes(passed=1)


def test_a_refresh_with_a_refused_key_keeps_the_good_recording(llm_pytester, server, env):
    """Refreshing with an expired key overwrote the 200 with the 401: the test failed, and so did CI from then on."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=SHARED.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record", "test_app.py::test_one").assert_outcomes(passed=1)
    before = cassette_file(llm_pytester).read_bytes()
    env.setenv("OPENAI_API_KEY", "sk-expired-0000000000")
    refreshed = llm_pytester.runpytest("--llm-mode=refresh", "test_app.py::test_one")
    refreshed.assert_outcomes(failed=1)
    refreshed.stdout.fnmatch_lines(["*AuthenticationError*401*"])
    assert cassette_file(llm_pytester).read_bytes() == before
    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest("test_app.py::test_one").assert_outcomes(passed=1)
