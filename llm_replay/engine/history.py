"""Which branch and commit a run tested, and whether a commit lies in the history checked out now.

The run bookkeeping lives in pytest's cache dir, which no ``git checkout`` changes: a test's latest pass may have been
made on another branch, where the test asks something else (committed there or not). Pruning counts a pass only when
it was made on the branch checked out now, at its commit or an ancestor of it (engine.pruning).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Iterable

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names, nothing git could take as an option


def checked_out(folder: Path) -> tuple[str, str] | None:
    """The branch (the ref checked out; "" for a detached HEAD) and the commit checked out in the git work tree
    holding ``folder``, read from git's files (a run pays no subprocess for it); None outside git. In git where the
    commit cannot be read (a branch with no commit yet, refs not kept as plain files) the commit is "": a pass made
    there is proven to be on no history."""
    git_dir = _git_dir(folder)
    if git_dir is None:
        return None
    found = _resolved(git_dir)
    if found is None and (git_dir / "reftable").is_dir():  # refs in git's binary tables: ask git (rare, ~5 ms)
        found = _asked(folder)
    return found or ("?", "")


def _asked(folder: Path) -> tuple[str, str] | None:
    try:
        asked = subprocess.run(["git", "rev-parse", "HEAD", "--symbolic-full-name", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = asked.stdout.split()
    if asked.returncode != 0 or len(lines) != 2 or not _COMMIT.fullmatch(lines[0]):
        return None
    return ("" if lines[1] == "HEAD" else lines[1], lines[0])  # a detached HEAD names itself


def _resolved(git_dir: Path) -> tuple[str, str] | None:
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return ("", head) if _COMMIT.fullmatch(head) else None  # a detached HEAD (a CI checkout)
        ref = head[4:].strip()
        common = git_dir / (git_dir / "commondir").read_text().strip() if (git_dir / "commondir").is_file() else git_dir
        for folder_of_refs in (git_dir, common):
            loose = folder_of_refs / ref
            if loose.is_file():
                commit = loose.read_text().strip()
                return (ref, commit) if _COMMIT.fullmatch(commit) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                commit, _, name = line.partition(" ")
                if name == ref and _COMMIT.fullmatch(commit):
                    return (ref, commit)
    except (OSError, UnicodeDecodeError):
        return None
    return None


def in_history(commits: Iterable[str], folder: Path) -> set[str]:
    """Those of ``commits`` that are HEAD or its ancestors in the repository at ``folder``; none where git cannot
    tell (not installed, the commit unknown here): an unproven pass is never a reason to delete."""
    found = set()
    for commit in commits:
        if not _COMMIT.fullmatch(commit):
            continue
        try:
            asked = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=folder, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if asked.returncode == 0:
            found.add(commit)
    return found


def _git_dir(folder: Path) -> Path | None:
    """The ``.git`` folder of the work tree holding ``folder`` (a worktree's or submodule's ``.git`` file points to it)."""
    for candidate in (folder, *folder.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            try:
                text = dot_git.read_text().strip()
            except (OSError, UnicodeDecodeError):
                return None
            return (candidate / text[len("gitdir:"):].strip()).resolve() if text.startswith("gitdir:") else None
    return None
