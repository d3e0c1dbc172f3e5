"""The branch and commit a run records for pruning, read from git's files as git itself reports them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from llm_replay.engine.history import checked_out, in_history

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    for name, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null"}.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "tests").mkdir()
    git(path, "commit", "-q", "--allow-empty", "-m", "one")
    return path


def test_branch_and_commit_as_git_reports_them_loose_packed_detached_and_in_a_worktree(repo, tmp_path):
    first = git(repo, "rev-parse", "HEAD")
    assert checked_out(repo / "tests") == ("refs/heads/main", first), "found from a subfolder, as pytest's rootdir may be"
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists() and checked_out(repo) == ("refs/heads/main", first)
    git(repo, "commit", "-q", "--allow-empty", "-m", "two")
    second = git(repo, "rev-parse", "HEAD")
    assert checked_out(repo) == ("refs/heads/main", second), "a loose ref wins over the packed one it replaced"
    git(repo, "checkout", "-q", "--detach", first)
    assert checked_out(repo) == ("", first)
    git(repo, "checkout", "-q", "main")
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"), first)
    assert (tmp_path / "side" / ".git").is_file() and checked_out(tmp_path / "side") == ("refs/heads/side", first)
    assert checked_out(repo) == ("refs/heads/main", second), "the main work tree's own HEAD"
    assert checked_out(tmp_path) is None, "the folder above the repository is outside it"


def test_a_branch_without_commits_has_no_commit_and_outside_git_no_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    outside = tmp_path / "plain"
    outside.mkdir()
    assert checked_out(outside) is None
    git(tmp_path, "init", "-q", "-b", "main")
    assert checked_out(tmp_path) == ("?", "")


def test_history_holds_the_ancestors_only_and_never_passes_git_anything_but_a_commit(repo, tmp_path):
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "commit", "-q", "--allow-empty", "-m", "feature")
    feature = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "main")
    unknown = "0" * 40
    planted = tmp_path / "planted"
    assert in_history({first, feature, unknown, f"--output={planted}"}, repo) == {first}
    assert not planted.exists()
    assert in_history({first}, tmp_path) == set(), "git cannot tell: nothing proven"


def test_a_pass_proven_on_no_history_frees_nothing_in_git(repo, tmp_path):
    """A branch with no commit yet (an orphan) and bookkeeping older than the branch check stored passes without a
    commit; they counted on every branch, and a prune on main deleted what main's test still asked for."""
    from llm_replay.engine.pruning import on_this_branch
    from llm_replay.model.runs import TestPass

    head = git(repo, "rev-parse", "HEAD")
    passes = {
        "t.py::on_main": TestPass("r1", "2026-01-01T00:00:00+00:00", frozenset(), ("refs/heads/main", head)),
        "t.py::old_bookkeeping": TestPass("r0", "2026-01-01T00:00:00+00:00", frozenset(), None),
        "t.py::on_an_orphan": TestPass("r2", "2026-01-01T00:00:00+00:00", frozenset(), ("refs/heads/experiment", "")),
    }
    here, elsewhere = on_this_branch(passes, checked_out(repo), repo)
    assert set(here) == {"t.py::on_main"} and elsewhere == 2
    git(repo, "checkout", "-q", "--orphan", "experiment")
    assert checked_out(repo) == ("?", ""), "in git, on a branch with no commit: no history at all"
    assert on_this_branch(passes, checked_out(repo), repo) == ({}, 3)
    outside = tmp_path / "plain"
    outside.mkdir()
    assert set(on_this_branch(passes, checked_out(outside), outside)[0]) == {"t.py::old_bookkeeping"}, "outside git, passes made outside git"


def test_refs_in_reftables_are_asked_of_git(repo, monkeypatch):
    """git 2.45+ may keep refs in binary tables (.git/reftable/): the files say nothing, so git itself is asked.
    (The git here may predate reftables: the files are hidden from the reader instead, and git answers.)"""
    from llm_replay.engine import history

    (repo / ".git" / "reftable").mkdir()
    monkeypatch.setattr(history, "_resolved", lambda git_dir: None)
    assert checked_out(repo) == ("refs/heads/main", git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", "--detach")
    assert checked_out(repo) == ("", git(repo, "rev-parse", "HEAD"))
