"""The ``llm-replay`` command: one subcommand per job. Parses arguments and dispatches; no logic of its own.

Exit codes: 0 success, 1 ``diff`` found differences, 2 bad usage or an unusable cassette
(the message says which file and what to do).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..errors import CassetteError, CommandError
from ..model.interaction import Interaction
from ..model.scrub import Scrubber
from ..stores.sqlite import SQLiteCache

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand, with its help."""
    parser = argparse.ArgumentParser(
        prog="llm-replay",
        description="Inspect, prune, import/export, diff and merge llm_replay cassettes.",
        epilog="Every subcommand that reads one cassette takes --cassette FILE; by default it is the file pytest "
        "would use from the current directory (ini llm_cassette, else cassettes/llm_cache.sqlite3 under the rootdir).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    one = argparse.ArgumentParser(add_help=False)
    one.add_argument("--cassette", type=Path, metavar="FILE", help="the SQLite cassette (default: the one pytest would use from here)")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str, parents: Sequence[argparse.ArgumentParser] = (one,)) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=list(parents), help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    listing = command("ls", _ls, "list recordings: key, model, endpoint, prompt, when and by which tests")
    listing.add_argument("--older-than", default=None, metavar="AGE", help="only recordings older than AGE (e.g. 30d, 12h, 90s)")
    command("show", _show, "print one recording in full: the canonical request and the response").add_argument(
        "key", help="a fingerprint or a unique prefix of one (as ls prints it), optionally with #OCCURRENCE"
    )
    command("stats", _stats, "count recordings, size and tokens recorded; tokens and API time saved by replays")
    imports = command("import", _import, "import vcrpy YAML cassettes (.yaml, .yml, .yaml.gz; files or folders)")
    imports.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a YAML cassette, or a folder searched for them")
    imports.add_argument(
        "--redacted-host", default=None, metavar="URL",
        help="host for recordings whose URI was redacted (LangChain's cassettes); default https://api.openai.com",
    )
    command("export", _export, "write vcrpy YAML cassettes that vcrpy replays, one per test").add_argument(
        "--yaml", type=Path, required=True, metavar="DIR", help="folder to write the .yaml files into"
    )
    prune = command("prune", _prune, "delete recordings that the last complete pytest run did not use")
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    diff = command("diff", _diff, "what was added, removed and changed between two cassettes (exit 1 if they differ)", parents=())
    diff.add_argument("old", type=Path, metavar="A")
    diff.add_argument("new", type=Path, metavar="B")
    command("textconv", _textconv, "print a cassette as sorted, stable text (git's diff textconv)", parents=()).add_argument("file", type=Path)
    merge = command("merge", _merge, "git merge driver: union THEIRS into OURS, keeping ours on a clash", parents=())
    for name in ("base", "ours", "theirs"):
        merge.add_argument(name, type=Path, metavar=name.upper())
    setup = command("git-setup", _git_setup, "configure git to diff cassettes as text and merge them by union", parents=(one,))
    setup.add_argument("--command", dest="driver_command", default=None, metavar="CMD", help="how git should call this tool (default: llm-replay if on PATH)")
    from .audit import add_arguments as add_audit_arguments
    from .audit import run_audit

    add_audit_arguments(command("audit", run_audit, "scan every byte of cassettes and exports for secrets (exit 1 on findings)", parents=()))
    from .scrub import run_scrub

    add_audit_arguments(command("scrub", run_scrub, "remove what audit finds: rewrite cassettes and exports in place, vacuum free space", parents=()))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the exit code says how it went."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CassetteError, CommandError) as error:
        print(f"llm-replay {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `llm-replay ls | head`: the reader has all it wanted
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK


def _cassette_path(args: argparse.Namespace) -> Path:
    from ..engine.project import default_cassette

    return args.cassette if args.cassette is not None else default_cassette()


@contextmanager
def _opened(path: Path, writable: bool = False, create: bool = False, scrubber: Scrubber | None = None) -> Iterator[SQLiteCache]:
    if not create and not path.is_file():
        raise CassetteError(f"no cassette at {path}; record one with pytest --llm-mode=record, or name another with --cassette FILE")
    cassette = SQLiteCache(path, readonly=not writable, scrubber=scrubber)
    try:
        yield cassette
    finally:
        cassette.close()


def _print(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def _ls(args: argparse.Namespace) -> int:
    from .listing import list_lines

    interactions: Iterable[Interaction]
    with _opened(_cassette_path(args)) as cassette:
        interactions = cassette.interactions()
        if args.older_than is not None:
            from ..engine.age import older_than

            interactions = older_than(interactions, _age(args.older_than, "--older-than"))
        _print(list_lines(interactions))
    return EXIT_OK


def _age(value: str, source: str) -> float:
    from ..engine.age import parse_age

    try:
        return parse_age(value, source)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _show(args: argparse.Namespace) -> int:
    from .listing import find_by_key, show_lines

    with _opened(_cassette_path(args)) as cassette:
        _print(show_lines(find_by_key(cassette, args.key)))
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    from .listing import stats_lines

    with _opened(_cassette_path(args)) as cassette:
        _print(stats_lines(cassette))
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from ..engine.hooks import all_shaped
    from ..engine.project import ini_before_record, ini_scrubber
    from ..stores.yaml_io import DEFAULT_REDACTED_HOST, import_yaml, read_yaml_cassettes

    path = _cassette_path(args)
    scrubber = ini_scrubber()
    report = read_yaml_cassettes(args.paths, args.redacted_host or DEFAULT_REDACTED_HOST, scrubber)
    report.interactions = list(all_shaped(ini_before_record(), report.interactions))  # the hook, then put's scrubbing
    with _opened(path, writable=True, create=True, scrubber=scrubber) as cassette:
        union = import_yaml(cassette, report)
    _print(report.skipped)
    _print(union.describe_conflicts())
    print(f"imported {union.added} recordings from {report.files} files into {path} ({union.identical} already there, {len(union.conflicts)} clashes kept ours, {len(report.skipped)} skipped)")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from ..engine.project import ini_scrubber
    from ..stores.yaml_io import export_yaml

    with _opened(_cassette_path(args), scrubber=ini_scrubber()) as cassette:
        written = export_yaml(map(cassette.scrubber.interaction, cassette.interactions()), args.yaml)
    print(f"wrote {len(written)} vcrpy cassettes into {args.yaml}")
    return EXIT_OK


def _prune(args: argparse.Namespace) -> int:
    from ..engine.project import pytest_rootdir_and_ini
    from ..engine.pruning import prune_after_last_complete_run

    path = _cassette_path(args)
    rootdir, _ = pytest_rootdir_and_ini(Path.cwd())
    with _opened(path, writable=not args.dry_run) as cassette:
        _print(prune_after_last_complete_run(cassette, rootdir, dry_run=args.dry_run))
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from .diff import diff_lines

    with _opened(args.old) as old, _opened(args.new) as new:
        lines = diff_lines(old, new)
    _print(lines or [f"no differences between {args.old} and {args.new}"])
    return EXIT_NO if lines else EXIT_OK


def _textconv(args: argparse.Namespace) -> int:
    from .git import textconv_lines

    if not args.file.is_file():
        raise CassetteError(f"no cassette at {args.file}")
    _print(textconv_lines(args.file))
    return EXIT_OK


def _merge(args: argparse.Namespace) -> int:
    from ..engine.project import ini_scrubber
    from .git import merge_into_ours

    _print(merge_into_ours(args.ours, args.theirs, ini_scrubber()))  # git runs drivers at the work tree's top
    return EXIT_OK


def _git_setup(args: argparse.Namespace) -> int:
    from .git import git_setup

    _print(git_setup(_cassette_path(args), Path.cwd(), args.driver_command))
    return EXIT_OK

