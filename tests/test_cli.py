"""The llm-replay command end to end: over cassettes recorded by real pytest sessions against the loopback server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpcore2  # noqa: F401  openai's transport, imported on its first request: import it here, once,
import openai  # so that pytester's inner sessions (which drop the modules they import) cannot leave
import pytest  # later tests holding exception classes of a dropped module generation
import vcr
from conftest import cassette_file, write_ini

from llm_replay.cli import main
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.sqlite import SQLiteCache

ASK = '''
import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content
'''


def app_tests(base_url: str, *prompts: str, failing: str = "") -> str:
    """A test module with one test per prompt (test_<first word>), and optionally one failing test."""
    body = ASK.format(base_url=base_url)
    for prompt in prompts:
        body += f'''

def test_{prompt.split()[0].lower()}(llm_cache):
    assert ask("{prompt}").startswith("echo")
'''
    if failing:
        body += f'''

def test_{failing}(llm_cache):
    ask("{failing}")
    assert False, "a failing test"
'''
    return body


# Every test here, inner sessions included, runs in a new user's shell (conftest's env).
pytestmark = pytest.mark.usefixtures("env")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what inner pytest sessions printed is not the command's output
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def recorded(llm_pytester, server, env) -> pytest.Pytester:
    """A project with two tests recorded into its default cassette; the cwd is the project."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Tell me a joke"))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    env.chdir(llm_pytester.path)
    return llm_pytester


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("ls", "show", "stats", "import", "export", "prune", "rm", "diff", "copy", "textconv", "merge", "git-setup"):
        assert f"    {command}" in out
    assert "--cassette FILE" in out


def test_the_console_script_is_installed():
    script = shutil.which("llm-replay", path=str(Path(sys.executable).parent))
    assert script, "pyproject.toml [project.scripts] must install llm-replay"
    result = subprocess.run([script, "prune", "--help"], capture_output=True, text=True, check=True)
    assert "--dry-run" in result.stdout and "--cassette FILE" in result.stdout


def test_ls_show_stats_use_the_cassette_pytest_uses(recorded, capsys):
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "MODEL", "ENDPOINT", "STATUS", "RECORDED", "TESTS", "PROMPT"]
    capital = next(line for line in lines if "Capital of France" in line)
    assert "gpt-4o-mini" in capital and "POST 127.0.0.1:" in capital and "/v1/chat/completions" in capital
    assert "test_app.py::test_capital" in capital and "(user) Capital of France" in capital
    assert lines[-1] == "2 recordings"

    key = capital.split()[0]
    code, out, _ = run_cli(capsys, "show", key[:6])
    assert code == 0
    assert f"key:       {key}" in out and "tests:     test_app.py::test_capital" in out
    assert '"content": "Capital of France"' in out and "response:  200" in out and '"object": "chat.completion"' in out

    code, out, _ = run_cli(capsys, "stats")
    assert code == 0
    assert "recordings:        2" in out and "models:            gpt-4o-mini 2" in out
    assert "tokens recorded:" in out and "(2 of 2 recordings report usage)" in out


def test_errors_name_the_file_and_the_fix(recorded, capsys, tmp_path):
    code, _, err = run_cli(capsys, "show", "zzzz")
    assert code == 2 and "no recording with key 'zzzz'" in err and "llm-replay ls" in err

    missing = tmp_path / "nowhere.sqlite3"
    code, _, err = run_cli(capsys, "ls", "--cassette", str(missing))
    assert code == 2 and str(missing) in err and "--llm-mode=record" in err
    for argv in (("diff", str(missing), str(cassette_file(recorded))), ("copy", str(missing), str(tmp_path / "new.sqlite3"))):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and f"no cassette at {missing}" in err and "--cassette" not in err, "diff and copy take no such option"

    not_sqlite = tmp_path / "notes.sqlite3"
    not_sqlite.write_text("hello")
    code, _, err = run_cli(capsys, "stats", "--cassette", str(not_sqlite))
    assert code == 2 and "not an llm_replay cassette" in err and str(not_sqlite) in err

    code, _, err = run_cli(capsys, "import", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml: no such file or folder" in err


def test_ini_llm_cassette_is_the_default(llm_pytester, server, env, capsys):
    env.setenv("OPENAI_API_KEY", server.api_key)
    write_ini(llm_pytester, "llm_cassette = recordings/suite.sqlite3\n")
    llm_pytester.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))
    llm_pytester.runpytest().assert_outcomes(passed=1)
    (llm_pytester.path / "sub").mkdir()
    env.chdir(llm_pytester.path / "sub")
    code, out, _ = run_cli(capsys, "stats")
    assert code == 0 and f"cassette:          {llm_pytester.path / 'recordings' / 'suite.sqlite3'}" in out


def test_diff_shows_added_removed_and_changed(recorded, server, capsys):
    before = recorded.path / "before.sqlite3"
    shutil.copy(cassette_file(recorded), before)
    code, out, _ = run_cli(capsys, "diff", str(before), str(cassette_file(recorded)))
    assert code == 0 and "no differences" in out

    recorded.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Name a colour"))
    recorded.runpytest("--llm-mode=refresh").assert_outcomes(passed=2)  # the capital is answered anew (#n changes)
    code, out, _ = run_cli(capsys, "diff", str(before), str(cassette_file(recorded)))
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith("+ ") and "Name a colour" in line for line in lines)
    assert any(line.startswith("~ ") and "Capital of France" in line and line.endswith("[text]") for line in lines), "named by drift class"
    assert any(line.startswith("    -") and "echo[0]: Capital of France" in line for line in lines), "the changed answer is shown"
    assert lines[-1].startswith("1 added, 0 removed, 1 changed (1 text)")
    code, out, _ = run_cli(capsys, "diff", str(cassette_file(recorded)), str(before))
    assert any(line.startswith("- ") and "Name a colour" in line for line in out.splitlines())


# -- prune ------------------------------------------------------------------------------------


def test_summary_counts_unused_and_llm_prune_deletes_what_passing_tests_no_longer_use(recorded, server, capsys):
    recorded.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Tell me a joke", failing="broken"))
    failing = recorded.runpytest("--llm-prune")
    failing.assert_outcomes(passed=2, failed=1)
    failing.stdout.fnmatch_lines(["llm_replay: 0 recordings no longer used by the tests that ran", "*kept the recordings of the 1 test(s) that did not pass"])
    assert run_cli(capsys, "ls")[1].endswith("3 recordings\n"), "the failing test's recording is kept"

    recorded.makepyfile(test_app=app_tests(server.base_url, "Capital of France", "Tell me a joke"))  # test_broken is deleted
    partial = recorded.runpytest("--llm-prune", "-k", "capital")  # test_tell is deselected: never judged
    partial.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])  # test_broken failed: it holds until rm --test
    assert run_cli(capsys, "rm", "--test", "test_app.py::test_broken")[0] == 0
    out = run_cli(capsys, "ls")[1]
    assert "joke" in out and "broken" not in out and out.endswith("2 recordings\n"), "only the deleted test's recording went"

    recorded.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))  # test_tell is deleted too
    counted = recorded.runpytest()
    counted.assert_outcomes(passed=1)
    counted.stdout.fnmatch_lines(["llm_replay: 1 recording no longer used by the tests that ran (pytest --llm-prune deletes them)"])
    assert run_cli(capsys, "ls")[1].endswith("2 recordings\n"), "counting deletes nothing"
    pruned = recorded.runpytest("--llm-prune", "--llm-mode=replay")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines([f"llm_replay: --llm-prune deleted 1 recording no longer used by the tests that ran, from {cassette_file(recorded)}"])
    out = run_cli(capsys, "ls")[1]
    assert "Capital of France" in out and "joke" not in out and "broken" not in out and out.endswith("1 recording\n")
    again = recorded.runpytest()
    again.stdout.fnmatch_lines(["llm_replay: 0 recordings no longer used by the tests that ran"])


def test_a_run_of_some_files_never_prunes_other_files_recordings(recorded, server, capsys):
    recorded.makepyfile(test_other=app_tests(server.base_url, "Name a colour"))
    recorded.runpytest().assert_outcomes(passed=3)
    recorded.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))  # drops the joke
    recorded.makepyfile(test_other=app_tests(server.base_url, "Name a number"))  # changes its prompt: not run below
    partial = recorded.runpytest("test_app.py", "--llm-prune")
    partial.assert_outcomes(passed=1)
    partial.stdout.fnmatch_lines(["llm_replay: 1 recording no longer used by the tests that ran", "llm_replay: --llm-prune deleted 1 recording *"])
    out = run_cli(capsys, "ls")[1]
    assert "Name a colour" in out and "Capital of France" in out and "joke" not in out


@pytest.mark.parametrize("started", ["on the ini's testpaths", "in the tests folder"])
def test_a_run_of_one_folder_never_prunes_recordings_of_tests_outside_it(recorded, server, capsys, env, started):
    """`pytest --llm-prune` on ini testpaths, or started in a subfolder, runs that folder only: tests beside it sharing
    the cassette (this repository's example suite) keep their recordings."""
    write_ini(recorded, "testpaths = tests" if started == "on the ini's testpaths" else "")
    recorded.makepyfile(**{"tests/test_other": app_tests(server.base_url, "Name a colour", "Pick a number")})
    recorded.runpytest("tests").assert_outcomes(passed=2)
    recorded.makepyfile(**{"tests/test_other": app_tests(server.base_url, "Name a colour")})  # drops the number
    if started == "in the tests folder":
        env.chdir(recorded.path / "tests")
    pruned = recorded.runpytest("--llm-prune")
    env.chdir(recorded.path)
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: 1 recording no longer used by the tests that ran", "llm_replay: --llm-prune deleted 1 recording *"])
    out = run_cli(capsys, "ls")[1]
    assert "Capital of France" in out and "joke" in out and "Name a colour" in out and "Pick a number" not in out
    assert out.endswith("3 recordings\n")


def test_prune_command_deletes_what_every_owner_passed_without(recorded, server, capsys):
    code, _, err = run_cli(capsys, "prune", "--cassette", str(recorded.path / "other.sqlite3"))
    assert code == 2 and "no cassette at" in err
    assert not (recorded.path / "other.sqlite3").exists(), "a command never creates a cassette it was only asked to read or prune"

    recorded.makepyfile(test_app=app_tests(server.base_url, "Capital of France", failing="broken"))
    recorded.runpytest("test_app.py::test_capital").assert_outcomes(passed=1)
    code, out, _ = run_cli(capsys, "prune", "--dry-run")
    assert code == 0 and out.startswith("would delete 0 recordings"), "test_tell was not collected whole: it may exist"
    recorded.runpytest().assert_outcomes(passed=1, failed=1)  # records "broken"; test_tell is now known to be gone
    imported = SQLiteCache(cassette_file(recorded))  # a recording no test owns, as llm-replay import makes them
    imported.put(Interaction.of(canonicalize("POST", "https://api.test/v1/x", b'{"q": "imported"}'), RecordedResponse(200, "OK", {}, b"{}"), recorded_at="2020-01-01T00:00:00+00:00"))
    imported.close()
    code, out, _ = run_cli(capsys, "prune", "--dry-run")
    assert code == 0 and out.startswith("would delete 1 recording that every owning test passed without")
    assert run_cli(capsys, "ls")[1].endswith("4 recordings\n")
    code, out, _ = run_cli(capsys, "prune")
    assert code == 0 and out.startswith("deleted 1 recording")
    out = run_cli(capsys, "ls")[1]
    assert out.endswith("3 recordings\n") and "joke" not in out and "broken" in out, "the failing test keeps its recording"
    assert "api.test" in out, "a recording no test owns goes only when named"


def test_prune_command_without_bookkeeping_says_what_to_do(recorded, capsys):
    shutil.rmtree(recorded.path / ".pytest_cache")
    code, _, err = run_cli(capsys, "prune")
    assert code == 2 and "no passing test is recorded" in err and "run the tests once" in err


def test_stats_counts_replays_and_what_they_saved(recorded, capsys):
    recorded.runpytest().assert_outcomes(passed=2)  # record mode: both replay, and the run may write usage
    recorded.runpytest().assert_outcomes(passed=2)
    out = run_cli(capsys, "stats")[1]
    assert "replays so far:    4 " in out
    saved = next(line for line in out.splitlines() if line.startswith("saved by replays:"))
    assert not saved.startswith("saved by replays:  0 tokens"), saved
    assert "last run: " in out and "(2 tests passed)" in out
    assert not any(name.endswith(("-wal", "-shm")) for name in (p.name for p in cassette_file(recorded).parent.iterdir()))


def test_export_writes_yaml_that_vcrpy_replays_through_the_openai_sdk(recorded, server, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", "--yaml", str(tmp_path / "yaml"))
    assert code == 0 and out.startswith("wrote 2 vcrpy cassettes")
    capital = tmp_path / "yaml" / "test_app" / "test_capital.yaml"
    assert capital.is_file() and (tmp_path / "yaml" / "test_app" / "test_tell.yaml").is_file()
    recorded_answer = next(i for i in _interactions(cassette_file(recorded)) if "Capital" in i.request.prompt()).response.json()

    server.stop()
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    matching = ["method", "scheme", "host", "port", "path", "query", "body"]
    with vcr.use_cassette(str(capital), record_mode="none", match_on=matching) as cassette:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of France"}])
    assert cassette.play_count == 1
    assert answer.to_dict() == recorded_answer


def _interactions(path: Path) -> list:
    from llm_replay.stores.sqlite import SQLiteCache

    cassette = SQLiteCache(path, readonly=True)
    try:
        return list(cassette.interactions())
    finally:
        cassette.close()


def test_import_export_and_merge_scrub_with_the_projects_ini_secrets(tmp_path, env, capsys):
    """ini llm_secret_env / llm_secret_patterns count for the commands that write, as they do for pytest."""
    import json

    from llm_replay import use_cassette
    from llm_replay.model.fingerprint import canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse
    from llm_replay.model.scrub import Scrubber
    from llm_replay.stores.sqlite import SQLiteCache

    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_secret_env = INTERNAL_CREDS\nllm_secret_patterns = corp-[0-9a-f]{16}\n")
    env.chdir(tmp_path)
    env.setenv("INTERNAL_CREDS", "creds-5566778899")
    secrets = (b"creds-5566778899", b"corp-0123456789abcdef")
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "creds-5566778899 for corp-0123456789abcdef"}]}
    answer = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok corp-0123456789abcdef"}}]}

    yaml_file = tmp_path / "old.yaml"
    yaml_file.write_text(vcr.serialize.serialize({"requests": [vcr.request.Request(
        "POST", "https://api.openai.com/v1/chat/completions", json.dumps(request), {"content-type": "application/json"}
    )], "responses": [{"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": json.dumps(answer)}}]}, vcr.serializers.yamlserializer))
    assert run_cli(capsys, "import", str(yaml_file))[0] == 0
    cassette = tmp_path / "cassettes" / "llm_cache.sqlite3"
    assert not any(secret in cassette.read_bytes() for secret in secrets)
    client = openai.OpenAI(base_url="https://api.openai.com/v1", api_key="any", max_retries=0)
    with use_cassette(cassette, mode="replay", scrubber=Scrubber(("INTERNAL_CREDS",), ("corp-[0-9a-f]{16}",))) as recorder:
        client.chat.completions.create(**request)
    assert recorder.replayed == 1, "the imported recording is keyed as the SDK's request is"

    unscrubbed = tmp_path / "theirs.sqlite3"  # as if written without the ini rules
    theirs = SQLiteCache(unscrubbed, scrubber=Scrubber(environ={}))
    theirs.put(Interaction.of(canonicalize("POST", "https://api.openai.com/v1/chat/completions", json.dumps({**request, "n": 2}).encode(), "application/json"),
                              RecordedResponse(200, "OK", {}, json.dumps(answer).encode())))
    theirs.close()
    assert secrets[1] in unscrubbed.read_bytes()
    assert run_cli(capsys, "export", "--cassette", str(unscrubbed), "--yaml", str(tmp_path / "exported"))[0] == 0
    assert not any(secret in path.read_bytes() for path in (tmp_path / "exported").rglob("*.yaml") for secret in secrets)
    (tmp_path / "base").write_bytes(b"")  # git hands an empty file where the branches share no ancestor
    assert run_cli(capsys, "merge", str(tmp_path / "base"), str(cassette), str(unscrubbed))[0] == 0
    merged = SQLiteCache(cassette, readonly=True)
    assert len(merged) == 2
    merged.close()
    assert not any(secret in cassette.read_bytes() for secret in secrets)
