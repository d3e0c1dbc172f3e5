"""A real git repository: two branches record different tests, git merges the cassette, both replay."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cassette_file
from test_cli import ASK, app_tests

from llm_replay.cli import main

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


DATED_TEST = '''

def test_dated(llm_cache):
    import datetime
    assert ask(f"What happened on {datetime.datetime.now().isoformat()}?").startswith("echo")
'''


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def repo(llm_pytester: pytest.Pytester, server, env) -> pytest.Pytester:
    """A project under git with llm-replay git-setup done, on branch main."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    for name, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null"}.items():
        env.setenv(name, value)
    path = llm_pytester.path
    git(path, "init", "-q", "-b", "main")
    env.chdir(path)
    assert main(["git-setup"]) == 0
    with (path / ".gitignore").open("a") as ignore:
        ignore.write(".pytest_cache/\n__pycache__/\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "project")
    return llm_pytester


def test_git_setup_writes_attributes_and_config(repo, capsys):
    attributes = (repo.path / ".gitattributes").read_text()
    assert attributes == "cassettes/llm_cache.sqlite3 -text diff=llm-replay merge=llm-replay\n"
    assert git(repo.path, "config", "merge.llm-replay.driver").strip().endswith("merge %O %A %B")
    assert git(repo.path, "config", "diff.llm-replay.textconv").strip().endswith("textconv")
    ignored = (repo.path / ".gitignore").read_text().splitlines()
    assert {"*-wal", "*-shm", "*-journal"} <= set(ignored), "a killed run's log, or a LangChain cache's, is never committed"
    for side_file in ("cassettes/llm_cache.sqlite3-wal", ".langchain.db-shm"):
        assert git(repo.path, "check-ignore", side_file).strip() == side_file
    assert main(["git-setup", "--command", "my-llm-replay"]) == 0  # idempotent, and the command can be chosen
    assert (repo.path / ".gitattributes").read_text() == attributes
    assert (repo.path / ".gitignore").read_text().splitlines() == ignored
    assert git(repo.path, "config", "merge.llm-replay.driver").strip() == "my-llm-replay merge %O %A %B"


def test_git_setup_outside_a_repository_says_so(tmp_path, env, capsys):
    env.chdir(tmp_path)
    assert main(["git-setup"]) == 2
    assert "llm-replay git-setup: error: git rev-parse --show-toplevel failed" in capsys.readouterr().err


def test_two_branches_record_different_tests_merge_and_both_replay(repo, server, env):
    path = repo.path
    repo.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))
    repo.runpytest().assert_outcomes(passed=1)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "record the capital")

    git(path, "checkout", "-q", "-b", "jokes")
    repo.makepyfile(test_jokes=app_tests(server.base_url, "Tell me a joke") + DATED_TEST)
    repo.runpytest("test_jokes.py").assert_outcomes(passed=2)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "record a joke")
    shown = git(path, "show", "HEAD", "--", "cassettes/llm_cache.sqlite3")
    assert '+llm_replay cassette: 3 recordings' in shown and '+tests:     test_jokes.py::test_tell' in shown, "git diff shows the cassette as text"

    git(path, "checkout", "-q", "main")
    repo.makepyfile(test_colours=app_tests(server.base_url, "Name a colour"))
    repo.runpytest("test_colours.py").assert_outcomes(passed=1)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "record a colour")

    merged = git(path, "merge", "--no-edit", "jokes")
    assert "llm-replay merge: added 2 recordings from the other branch, 1 were already here" in merged
    assert git(path, "status", "--porcelain") == "", "the merge completed without conflicts"

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    replayed = repo.runpytest()
    replayed.assert_outcomes(passed=4)  # the dated prompt replays only if its test's instant came along
    replayed.stdout.fnmatch_lines(["llm_replay: 4 replayed, 0 recorded, 0 missed in 4 tests*"])


def test_same_test_recorded_on_both_branches_keeps_ours_and_reports(repo, server):
    path = repo.path
    git(path, "checkout", "-q", "-b", "theirs")
    repo.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))
    repo.runpytest().assert_outcomes(passed=1)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "theirs")
    git(path, "checkout", "-q", "main")
    repo.makepyfile(test_app=app_tests(server.base_url, "Capital of France"))
    repo.runpytest().assert_outcomes(passed=1)  # the server numbers its answers: this one differs from theirs
    ours = cassette_file(repo).read_bytes()
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "ours")

    merged = git(path, "merge", "--no-edit", "theirs")
    assert "1 recorded differently on both branches (kept ours" in merged
    assert "kept ours for " in merged and "POST http://127.0.0.1:" in merged
    before = path / "ours-before.sqlite3"
    before.write_bytes(ours)
    assert main(["diff", str(before), str(cassette_file(repo))]) == 0, "the merged cassette answers as ours did"


def test_what_only_their_branch_re_recorded_is_theirs_after_the_merge_instant_included(repo, server, env):
    """Ours won every clash and kept its own instants, though ours had not changed them since the branches parted:
    their refresh of a dated test (a new prompt, a new instant) merged into a test that missed."""
    path = repo.path
    repo.makepyfile(test_app=app_tests(server.base_url, "Capital of France") + DATED_TEST)
    repo.runpytest().assert_outcomes(passed=2)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "record")
    before = cassette_file(repo).read_bytes()

    git(path, "checkout", "-q", "-b", "feature")
    repo.makepyfile(test_app=app_tests(server.base_url, "Capital of France") + DATED_TEST.replace("What happened on", "What was new on"))
    repo.runpytest("--llm-mode=refresh").assert_outcomes(passed=2)  # the capital re-recorded under its key, with a new answer
    git(path, "commit", "-q", "-am", "re-record on feature")
    theirs = cassette_file(repo).read_bytes()

    git(path, "checkout", "-q", "main")
    repo.makepyfile(test_colours=app_tests(server.base_url, "Name a colour"))
    repo.runpytest("test_colours.py").assert_outcomes(passed=1)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "a colour on main")
    merged = git(path, "merge", "--no-edit", "feature")
    assert "took theirs for 1 that only the other branch re-recorded" in merged and "kept ours" not in merged

    capital = {name: _answer_to(content, "Capital of France") for name, content in (("ancestor", before), ("theirs", theirs), ("merged", cassette_file(repo).read_bytes()))}
    assert capital["merged"] == capital["theirs"] != capital["ancestor"]
    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    repo.runpytest("test_app.py", "test_colours.py").assert_outcomes(passed=3)  # the dated prompt replays only with their instant


def _answer_to(cassette: bytes, prompt: str) -> bytes:
    import tempfile

    from llm_replay.stores.sqlite import SQLiteCache

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "c.sqlite3"
        copy.write_bytes(cassette)
        store = SQLiteCache(copy, readonly=True)
        try:
            return next(i.response.body for i in store.interactions() if prompt in i.request_json)
        finally:
            store.close()


def test_a_recording_that_clashes_keeps_ours_owned_by_both_branches_tests(tmp_path, capsys):
    """Ours wins a clash, and theirs' test replays it from now on: it owns it too, or pruning after that test's branch
    deletes what it still needs."""
    from llm_replay.model.fingerprint import canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse
    from llm_replay.stores.sqlite import SQLiteCache

    request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', "application/json")
    for name, test, answer in (("ours", "tests/test_a.py::test_x", b'{"answer":"A"}'), ("theirs", "tests/test_b.py::test_y", b'{"answer":"B"}')):
        cassette = SQLiteCache(tmp_path / f"{name}.sqlite3")
        cassette.put(Interaction.of(request, RecordedResponse(200, "OK", {}, answer), tests=(test,)))
        cassette.close()
    (tmp_path / "base.sqlite3").write_bytes(b"")
    assert main(["merge", *(str(tmp_path / f"{name}.sqlite3") for name in ("base", "ours", "theirs"))]) == 0
    assert "1 recorded differently on both branches (kept ours" in capsys.readouterr().out
    merged = SQLiteCache(tmp_path / "ours.sqlite3", readonly=True)
    [kept] = list(merged.interactions())
    merged.close()
    assert kept.response.body == b'{"answer":"A"}' and kept.tests == ("tests/test_a.py::test_x", "tests/test_b.py::test_y")


def test_a_recording_only_ours_re_recorded_is_kept_without_calling_it_a_clash(tmp_path, capsys):
    """The base and theirs agree, ours refreshed it: ours is the merge, and the driver said both branches recorded it
    differently and asked for a re-recording."""
    from llm_replay.model.fingerprint import canonicalize
    from llm_replay.model.interaction import Interaction, RecordedResponse
    from llm_replay.stores.sqlite import SQLiteCache

    request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', "application/json")
    for name, answer in (("base", b'{"answer":"old"}'), ("theirs", b'{"answer":"old"}'), ("ours", b'{"answer":"refreshed"}')):
        cassette = SQLiteCache(tmp_path / f"{name}.sqlite3")
        cassette.put(Interaction.of(request, RecordedResponse(200, "OK", {}, answer), tests=("tests/test_a.py::test_x",)))
        cassette.close()
    assert main(["merge", *(str(tmp_path / f"{name}.sqlite3") for name in ("base", "ours", "theirs"))]) == 0
    out = capsys.readouterr().out
    assert out == "llm-replay merge: added 0 recordings from the other branch, 1 were already here\n"
    merged = SQLiteCache(tmp_path / "ours.sqlite3", readonly=True)
    assert [i.response.body for i in merged.interactions()] == [b'{"answer":"refreshed"}']
    merged.close()


def test_merge_and_textconv_refuse_what_is_no_cassette_naming_the_file_and_changing_nothing(tmp_path, capsys):
    """Run by hand, the driver's arguments may be wrong: a missing or folder THEIRS merged nothing and exited 0, and a
    file that is no cassette was named by the path of a temporary copy, with advice about a pytest option."""
    (tmp_path / "base.sqlite3").write_bytes(b"")
    (tmp_path / "ours.sqlite3").write_bytes(b"")
    (tmp_path / "text.sqlite3").write_text("hello\n")
    (tmp_path / "folder").mkdir()
    for theirs in ("missing.sqlite3", "folder"):
        assert main(["merge", str(tmp_path / "base.sqlite3"), str(tmp_path / "ours.sqlite3"), str(tmp_path / theirs)]) == 2
        assert f"no cassette file at {tmp_path / theirs}: merge and textconv take the files git hands them" in capsys.readouterr().err
    for command in (["textconv"], ["merge", str(tmp_path / "base.sqlite3"), str(tmp_path / "ours.sqlite3")]):
        assert main([*command, str(tmp_path / "text.sqlite3")]) == 2
        err = capsys.readouterr().err
        assert f"error: {tmp_path / 'text.sqlite3'} is not an llm_replay cassette (not an SQLite file); .gitattributes marks it" in err
        assert "llm-replay-" not in err and "--llm-cassette" not in err
    assert (tmp_path / "text.sqlite3").read_text() == "hello\n" and (tmp_path / "ours.sqlite3").read_bytes() == b""



def _two_asking(base_url: str, capital: str, again: str) -> str:
    return ASK.format(base_url=base_url) + f"""

def test_capital(llm_cache):
    assert ask("{capital}").startswith("echo")


def test_again(llm_cache):
    assert ask("{again}").startswith("echo")
"""


def test_a_pass_on_another_branch_never_prunes_what_this_branch_still_uses(repo, server, env, capsys):
    """The run bookkeeping lives in .pytest_cache, which no checkout changes: a test that passed on a feature branch
    without a recording (its prompt changed there) must not make main's prunes delete what main's test still asks."""
    path = repo.path
    repo.makepyfile(test_app=_two_asking(server.base_url, "Capital of France", "Capital of France"))
    repo.runpytest().assert_outcomes(passed=2)  # one recording, owned by both tests
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "record the capital")

    git(path, "checkout", "-q", "-b", "feature")
    repo.makepyfile(test_app=_two_asking(server.base_url, "Capital of Italy", "Capital of Italy"))
    repo.runpytest().assert_outcomes(passed=2)  # both pass without main's recording
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "ask about Italy")

    git(path, "checkout", "-q", "main")
    for argv in (["prune", "--dry-run"], ["prune"]):
        capsys.readouterr()
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith(("would delete 0 recordings", "deleted 0 recordings")), "feature's passes say nothing of main"
        assert "(2 test(s) last passed on another branch, or on a commit this branch no longer holds" in out
    repo.makepyfile(test_app=_two_asking(server.base_url, "Capital of France", "Name a colour"))  # an edit in progress
    pruned = repo.runpytest("--llm-prune", "test_app.py::test_again")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    git(path, "checkout", "-q", "test_app.py", "cassettes/llm_cache.sqlite3")  # the edit dropped

    server.stop()
    env.delenv("OPENAI_API_KEY")
    env.setenv("CI", "true")
    repo.runpytest("-k", "capital").assert_outcomes(passed=1, deselected=1)  # main's test still replays

    git(path, "merge", "-q", "--no-edit", "feature")
    repo.runpytest().assert_outcomes(passed=2)  # on main now, both pass without France's recording: it may go
    capsys.readouterr()
    assert main(["prune"]) == 0 and capsys.readouterr().out == f"deleted 1 recording that every owning test passed without, from {cassette_file(repo)}\n"
    repo.runpytest().assert_outcomes(passed=2)
