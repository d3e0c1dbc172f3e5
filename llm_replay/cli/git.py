"""git and SQLite cassettes: a textconv so ``git diff`` shows text, a merge driver that unions recordings.

``llm-replay git-setup`` writes both into the repository: the ``.gitattributes`` line (committed,
shared) and the driver commands in ``.git/config`` (per clone, as git requires for drivers).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import CassetteError, CommandError
from ..stores.union import union_into
from .listing import show_lines

if TYPE_CHECKING:
    from ..model.scrub import Scrubber
    from ..stores.sqlite import SQLiteCache

DRIVER = "llm-replay"
# SQLite's side files: a cassette (and a LangChain cache file such as .langchain.db) at rest is one file; these exist
# only while a run writes, or beside a killed run's file until the next writing run folds them back.
IGNORED_SIDE_FILES = ("*-wal", "*-shm", "*-journal")
_IGNORE_COMMENT = "# SQLite side files of llm_replay cassettes and LangChain cache files (llm-replay git-setup)"


@contextmanager
def snapshot(path: Path) -> Iterator["SQLiteCache"]:
    """A read-only copy of a file git hands us, opened in a folder of our own.

    A read-only SQLite connection to a WAL database leaves -wal/-shm files beside it; beside
    git's temporary files they would litter the work tree.
    """
    from ..stores.sqlite import SQLiteCache

    if not path.is_file():
        raise CommandError(f"no cassette file at {path}: merge and textconv take the files git hands them (llm-replay git-setup registers both)")
    with tempfile.TemporaryDirectory(prefix="llm-replay-") as folder:
        copy = Path(folder) / "cassette.sqlite3"
        shutil.copyfile(path, copy)
        try:
            cassette = SQLiteCache(copy, readonly=True)
            try:
                yield cassette
            finally:
                cassette.close()
        except (CassetteError, CommandError) as error:  # on opening, or a damaged page or row read later: named as git's file
            message = str(error).replace(str(copy), str(path))
            if "not an llm_replay cassette" in message:  # the store's advice is about --llm-cassette, which git never set
                message = f"{message.split('; ', 1)[0]}; .gitattributes marks it as a cassette for git: correct that pattern"
            raise CommandError(message) from None


def textconv_lines(path: Path) -> list[str]:
    """The whole cassette as text sorted by key, so a re-recording shows as a small diff."""
    with snapshot(path) as cassette:
        interactions = list(cassette.interactions())
    lines = [f"llm_replay cassette: {len(interactions)} recordings", ""]
    for interaction in interactions:
        lines.extend(show_lines(interaction))
        lines.append("")
    return lines


def merge_into_ours(base: Path, ours: Path, theirs: Path, scrubber: "Scrubber | None" = None) -> list[str]:
    """git's merge driver: add their recordings to ours (the file git will keep); on a clash ours wins, unless only
    theirs changed it since ``base``, the common ancestor (a refresh on their branch). ``scrubber``: the project's
    secret rules (ini), applied to what is added."""
    from ..stores.sqlite import SQLiteCache

    with snapshot(theirs) as other, snapshot(base) as ancestor:
        mine = SQLiteCache(ours, scrubber=scrubber)
        try:
            report = union_into(mine, other, base=ancestor)  # their tests' instants travel too, or prompts carrying the date would miss
        finally:
            mine.close()
    summary = f"llm-replay merge: added {report.added} recordings from the other branch, {report.identical} were already here"
    if report.taken:
        summary += f"; took theirs for {report.taken} that only the other branch re-recorded"
    if report.conflicts:
        summary += f"; {len(report.conflicts)} recorded differently on both branches (kept ours; re-record them with --llm-mode=refresh to choose)"
    return [summary, *report.describe_conflicts()]


def default_command() -> str:
    """How git should start this tool: the script if it is on PATH, else this Python with ``-m llm_replay``."""
    return DRIVER if shutil.which(DRIVER) else f"{shlex.quote(sys.executable)} -m llm_replay"


def git_setup(cassette: Path, directory: Path, command: str | None = None) -> list[str]:
    """Mark the cassette in .gitattributes and register the textconv and the merge driver; idempotent."""
    top = Path(_git(directory, "rev-parse", "--show-toplevel").strip())
    try:
        pattern = cassette.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        raise CommandError(f"cassette {cassette} is outside the git repository at {top}; run git-setup in the repository that holds it") from None
    command = command or default_command()
    attributes = top / ".gitattributes"
    line = f"{pattern} -text diff={DRIVER} merge={DRIVER}"
    existing = attributes.read_text(encoding="utf-8").splitlines() if attributes.exists() else []
    done = []
    if line not in existing:
        kept = [entry for entry in existing if entry.split()[:1] != [pattern]]
        attributes.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
        done.append(f"{attributes}: {line}  (commit this file)")
    done.extend(_ignore_side_files(top / ".gitignore"))
    settings = {
        f"diff.{DRIVER}.textconv": f"{command} textconv",
        f"merge.{DRIVER}.name": "llm_replay cassette: union of both branches' recordings",
        f"merge.{DRIVER}.driver": f"{command} merge %O %A %B",
    }
    for name, value in settings.items():
        _git(top, "config", "--local", name, value)
        done.append(f"git config {name} {shlex.quote(value)}")
    done.append("git diff now shows the cassette as text; git merge unions recordings (every clone runs llm-replay git-setup once)")
    return done


def _ignore_side_files(gitignore: Path) -> list[str]:
    """Add the side-file patterns .gitignore lacks, so ``git add cassettes/`` never picks up a log."""
    existing = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [pattern for pattern in IGNORED_SIDE_FILES if pattern not in existing]
    if not missing:
        return []
    lines = [*existing, *([] if _IGNORE_COMMENT in existing else [_IGNORE_COMMENT]), *missing]
    gitignore.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"{gitignore}: ignore {' '.join(missing)}  (commit this file)"]


def _git(directory: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CommandError("git is not installed (or not on PATH); install git, then run llm-replay git-setup again") from None
    if result.returncode != 0:
        raise CommandError(f"git {' '.join(args[:2])} failed in {directory}: {result.stderr.strip()}; run git-setup inside a git repository")
    return result.stdout
