"""The ``llm-replay`` command: one subcommand per job. Parses arguments and dispatches; no logic of its own.

Exit codes: 0 success, 1 ``diff`` found differences, 2 bad usage or an unusable cassette
(the message says which file and what to do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from ..errors import CassetteError, CommandError
from ..model.scrub import Scrubber
from ..stores.base import Store

if TYPE_CHECKING:
    from .selection import Selection

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand, with its help."""
    parser = argparse.ArgumentParser(
        prog="llm-replay",
        description="Inspect, prune, import/export, copy, diff and merge llm_replay cassettes.",
        epilog="Every subcommand that reads one cassette takes --cassette FILE|URL (a redis:// URL for a shared Redis); "
        "by default it is the one pytest would use from the current directory (ini llm_cassette, else "
        "cassettes/llm_cache.sqlite3 under the rootdir).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    one = argparse.ArgumentParser(add_help=False)
    one.add_argument(
        "--cassette", metavar="FILE|URL", help="an SQLite file or a redis://host:6379/0?prefix=NAME URL (default: the one pytest would use from here)"
    )

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str, parents: Sequence[argparse.ArgumentParser] = (one,)) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=list(parents), help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    chooses = argparse.ArgumentParser(add_help=False)
    chooses.add_argument("--test", metavar="NODEID", help="recordings of this test, or of every test in this file or folder")
    chooses.add_argument("--model", metavar="NAME", help="recordings for this model (glob: 'gpt-4o*')")
    chooses.add_argument("--endpoint", metavar="TEXT", help="recordings whose endpoint contains TEXT ('chat/completions', 'api.anthropic.com')")
    chooses.add_argument("--unused", action="store_true", help="recordings llm-replay prune would delete: their owning tests all passed without them")
    chooses.add_argument("--since", metavar="WHEN", help="recorded at or after WHEN: a date or time (2026-11-30, UTC unless given) or an age (12h, 3d)")
    chooses.add_argument("--older-than", metavar="AGE", help="recorded more than AGE ago (30d, 12h, 90s); recordings without a time are not")
    ls = command("ls", _ls, "list recordings: key, model, endpoint, prompt, when and by which tests", parents=(one, chooses))
    ls.add_argument("--json", action="store_true", help="one JSON array of recordings (full prompt, tokens, latency) instead of the table")
    rm = command("rm", _rm, "delete recordings by key or by test (their bytes are erased from the file)", parents=(one, chooses))
    rm.add_argument("keys", nargs="*", metavar="KEY", help="a fingerprint or a unique prefix of one (as ls prints it), optionally with #OCCURRENCE")
    rm.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
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
    prune = command("prune", _prune, "delete recordings whose owning tests all passed, in later pytest runs, without them")
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    diff = command("diff", _diff, "what was added, removed and changed between two cassettes (exit 1 if they differ)", parents=())
    diff.add_argument("old", metavar="A", help="a cassette file or URL")
    diff.add_argument("new", metavar="B", help="a cassette file or URL")
    copy = command("copy", _copy, "copy every recording (with instants and owners) from SRC into DST; DST's own win a clash", parents=())
    copy.add_argument("source", metavar="SRC", help="a cassette file or URL, e.g. redis://ci-redis:6379/0?prefix=myapp")
    copy.add_argument("target", metavar="DST", help="a cassette file or URL; created when missing")
    command("textconv", _textconv, "print a cassette as sorted, stable text (git's diff textconv)", parents=()).add_argument("file", type=Path)
    merge = command("merge", _merge, "git merge driver: union THEIRS into OURS; a clash keeps ours unless only theirs changed it since BASE", parents=())
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


def _cassette_spec(args: argparse.Namespace) -> str:
    from ..engine.project import default_cassette
    from ..stores.spec import resolved

    return resolved(args.cassette, Path.cwd()) if args.cassette is not None else default_cassette()


@contextmanager
def _opened(spec: str, writable: bool = False, create: bool = False, scrubber: Scrubber | None = None) -> Iterator[Store]:
    from ..stores.spec import open_store

    cassette = open_store(spec, readonly=not writable, must_exist=not create, scrubber=scrubber)
    try:
        yield cassette
    finally:
        cassette.close()


def _print(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def _ls(args: argparse.Namespace) -> int:
    from ..stores.summaries import summaries_of
    from .listing import list_lines, prompt_text
    from .selection import json_record

    with _opened(_cassette_spec(args)) as cassette:
        rows = _selection(args, cassette).select(summaries_of(cassette, shown=not args.json))
        if not args.json:
            _print(list_lines(rows))
            return EXIT_OK
        print("[", end="")
        for number, row in enumerate(rows):
            request = row.request
            print(("," if number else "") + "\n" + json.dumps(json_record(row, request, prompt_text(request)), ensure_ascii=False), end="")
        print("\n]")
    return EXIT_OK


def _rm(args: argparse.Namespace) -> int:
    from ..engine.project import pytest_rootdir_and_ini, run_ledger
    from .listing import resolve_key
    from .removal import erase, plan_removal

    if not args.keys and not (args.test or args.model or args.endpoint or args.since or args.older_than or args.unused):
        raise CommandError("say what to delete: KEY... (as ls prints them) or a filter such as --test NODEID; nothing was deleted")
    spec = _cassette_spec(args)
    with _opened(spec) as cassette:  # chosen read-only: a refused or empty choice leaves the cassette as it was
        keys = [resolve_key(cassette, key) for key in args.keys] if args.keys else None  # every key found, or nothing deleted
        ledger = run_ledger(spec)
        removal = plan_removal(cassette, _selection(args, cassette, keys=keys), ledger.passes(), ledger.holds(), pytest_rootdir_and_ini(Path.cwd())[0])
    _print(removal.lines())
    if args.dry_run or not (removal.doomed or removal.released):
        count = len(removal.doomed) if args.dry_run else 0
        print(f"{'would delete' if args.dry_run else 'deleted'} {count} recording{'s' if count != 1 else ''} from {spec}")
        return EXIT_OK
    with _opened(spec, writable=True) as cassette:
        print(erase(cassette, run_ledger(spec), removal))
    return EXIT_OK


def _selection(args: argparse.Namespace, cassette: Store, keys: Iterable[tuple[str, int]] | None = None) -> "Selection":
    from ..engine.project import pytest_rootdir_and_ini, run_ledger
    from ..engine.pruning import unused_recordings
    from .selection import Selection, parse_older_than, parse_since

    only = frozenset(keys) if keys is not None else None
    if args.unused:
        rootdir, _ = pytest_rootdir_and_ini(Path.cwd())
        deleting = args.command == "rm" and not args.dry_run
        unused = frozenset(unused_recordings(cassette, run_ledger(_cassette_spec(args)), rootdir, f"llm-replay {args.command} --unused", deleting))
        only = unused if only is None else only & unused
    return Selection(
        test=args.test, model=args.model, endpoint=args.endpoint, since=parse_since(args.since), before=parse_older_than(args.older_than), only=only
    )


def _show(args: argparse.Namespace) -> int:
    from .listing import find_by_key, show_lines

    with _opened(_cassette_spec(args)) as cassette:
        _print(show_lines(find_by_key(cassette, args.key)))
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    from ..engine.project import ini_prices, run_ledger
    from .listing import stats_lines

    spec = _cassette_spec(args)
    with _opened(spec) as cassette:
        _print(stats_lines(cassette, run_ledger(spec), ini_prices()))
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from ..engine.hooks import all_shaped
    from ..engine.project import ini_before_record, ini_scrubber
    from ..stores.yaml_io import DEFAULT_REDACTED_HOST, import_yaml, read_yaml_cassettes

    scrubber = ini_scrubber()
    report = read_yaml_cassettes(args.paths, args.redacted_host or DEFAULT_REDACTED_HOST, scrubber)
    report.interactions = list(all_shaped(ini_before_record(), report.interactions))  # the hook, then put's scrubbing
    with _opened(_cassette_spec(args), writable=True, create=True, scrubber=scrubber) as cassette:
        union = import_yaml(cassette, report)
    _print(report.skipped)
    _print(union.describe_conflicts())
    print(f"imported {union.added} recordings from {report.files} files into {cassette.describe()} ({union.identical} already there, {len(union.conflicts)} clashes kept ours, {len(report.skipped)} skipped)")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from ..engine.project import ini_scrubber
    from ..stores.yaml_io import export_yaml

    with _opened(_cassette_spec(args), scrubber=ini_scrubber()) as cassette:
        written = export_yaml(map(cassette.scrubber.interaction, cassette.interactions()), args.yaml)
    print(f"wrote {len(written)} vcrpy cassettes into {args.yaml}")
    return EXIT_OK


def _prune(args: argparse.Namespace) -> int:
    from ..engine.project import pytest_rootdir_and_ini, run_ledger
    from ..engine.pruning import prune_unused

    rootdir, _ = pytest_rootdir_and_ini(Path.cwd())
    spec = _cassette_spec(args)
    with _opened(spec, writable=not args.dry_run) as cassette:
        _print(prune_unused(cassette, run_ledger(spec), rootdir, dry_run=args.dry_run))
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from .diff import diff_lines

    with _opened(args.old) as old, _opened(args.new) as new:
        lines = diff_lines(old, new)
        _print(lines or [f"no differences between {old.describe()} and {new.describe()}"])
    return EXIT_NO if lines else EXIT_OK


def _copy(args: argparse.Namespace) -> int:
    from ..engine.hooks import all_shaped
    from ..engine.project import ini_before_record, ini_scrubber
    from ..stores.union import union_into

    hook = ini_before_record()
    with _opened(args.source) as source, _opened(args.target, writable=True, create=True, scrubber=ini_scrubber()) as target:
        if source.describe() == target.describe():
            raise CommandError(f"copy: {source.describe()} is both the source and the target; name two cassettes")
        report = union_into(target, source, all_shaped(hook, source.interactions()))  # the hook, then put's scrubbing
        _print(report.describe_conflicts())
        clashes = f"; {len(report.conflicts)} recorded differently in both (kept {target.describe()}'s)" if report.conflicts else ""
        print(
            f"copied {report.added} recordings from {source.describe()} to {target.describe()} "
            f"({report.identical} already there{clashes}; {report.instants} test instants)"
        )
    return EXIT_OK


def _textconv(args: argparse.Namespace) -> int:
    from .git import textconv_lines

    _print(textconv_lines(args.file))
    return EXIT_OK


def _merge(args: argparse.Namespace) -> int:
    from ..engine.project import ini_scrubber
    from .git import merge_into_ours

    _print(merge_into_ours(args.base, args.ours, args.theirs, ini_scrubber()))  # git runs drivers at the work tree's top
    return EXIT_OK


def _git_setup(args: argparse.Namespace) -> int:
    from ..stores.spec import redacted, scheme
    from .git import git_setup

    spec = _cassette_spec(args)
    if scheme(spec) is not None:
        raise CommandError(f"git-setup is for a cassette file in the repository, not {redacted(spec)}; copy the shared one into a file first (llm-replay copy)")
    _print(git_setup(Path(spec), Path.cwd(), args.driver_command))
    return EXIT_OK

