"""The end of a run and pruning: settle who owns what, remember the run, report what went unused, delete when asked.

Everything is written once, at the end of the session. The run's bookkeeping goes to the ledger (pytest's
cache dir); the cassette is written only when ownership changed, a refresh replaced a test's recordings,
or ``--llm-prune`` deletes: a run that records nothing leaves it byte-identical.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from ..errors import CassetteError, CommandError
from ..model.interaction import Key, OwnerChange
from ..model.runs import RunOutcome, RunRecord, TestPass, prunable, written_before_run
from .history import checked_out, in_history
from .live_sessions import LiveSession, ended, others_running, running_elsewhere

if TYPE_CHECKING:
    from ..stores.base import Store
    from ..stores.ledger import RunLedger


def now_stamp() -> str:
    """When a run starts or ends, as the ledger keeps it."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def finish_run(cassette_spec: str, ledger: "RunLedger", outcome: RunOutcome, *, uid: str, started_at: str, rootdir: Path, prune: bool) -> list[str]:
    """Summary lines for the end of a pytest run; settles ownership, records the run, prunes when asked.
    ``cassette_spec``: an absolute path or a URL (stores.spec)."""
    from ..stores.spec import open_store, scheme

    if scheme(cassette_spec) is None and not Path(cassette_spec).is_file():
        ended(ledger, [uid])  # it may have noted itself running: no record ends it
        return ["llm_replay: --llm-prune: no cassette yet, nothing to prune"] if prune else []
    writes = outcome.writes  # each ask scans every test of the run
    cassette = open_store(cassette_spec, readonly=not (writes or prune))
    try:
        # read once, again only after ownership was written; a recording no test owns counts only where a test of
        # this run became its owner (settled below), so a run that writes nothing reads the owned ones alone
        unreadable: dict[Key, str] = {}  # a row whose owners cannot be read costs the run that row's bookkeeping only
        index = cassette.index(owned=not writes, unreadable=unreadable)
        files = where_test_files_are(cassette, rootdir)
        # a test missing from a file this run collected whole was deleted or renamed, in this checkout; over a cassette
        # other checkouts share (Redis) it may be another branch's test, as a missing file may be another branch's
        vanished = _deleted_tests(outcome, {test for _, owners, _ in index for test in owners}, files) if files is not None else set()
        checkout = checked_out(rootdir)
        if vanished:
            vanished = _surely_deleted(vanished, ledger, checkout, rootdir)
        passes = outcome.passes(vanished)
        lines = []
        # asked before the bookkeeping is read: a session that ended since has its use there (its record ended it)
        running = others_running(ledger, uid) if prune or (writes and outcome.refreshes) else []
        unpassed = {test: result.used for test, result in outcome.tests.items() if not result.complete_pass and result.used}
        try:
            ledger.record(RunRecord(uid, started_at, now_stamp(), len(outcome.passes()), checkout), passes, outcome.replays(), unpassed)
            known, holds = ledger.passes(), ledger.holds()
        except CassetteError as error:  # a read-only checkout: this run's own passes still count
            lines.append(f"llm_replay: this run's bookkeeping was not kept: {error}")
            known, holds = {test: TestPass(uid, started_at, used, checkout) for test, used in passes.items()}, {}
        if writes:
            lines += settle_ownership(cassette, outcome, known, started_at, index, holds, _unknown_use(outcome, running, cassette))
            index = cassette.index(owned=True, unreadable=unreadable)
        lines += [f"llm_replay: {line}" for line in _unreadable_owner_lines(cassette, unreadable, known, holds)]
        # what the tests that did not pass used, in this run or since their latest pass: no pass records it, nor may it go
        held = outcome.held() | holds.keys()
        unused = [key for key in prunable(index, known, files, among=passes) if key not in held]
        if unused:  # git is asked about other commits only when something would go
            here = on_this_branch(known, checkout, rootdir)[0]
            unused = [key for key in prunable(index, here, files, among=passes, elsewhere=known.keys() - here.keys()) if key not in held]
        noun = "recording" if len(unused) == 1 else "recordings"
        lines.append(f"llm_replay: {len(unused)} {noun} no longer used by the tests that ran")
        if not prune:
            if unused:
                lines[-1] += " (pytest --llm-prune deletes them)"
            return lines
        if outcome.crashed or outcome.interrupted:
            return lines + [_unknown_use_line(outcome.crashed)]
        if running and unused:
            return lines + [f"llm_replay: --llm-prune deleted nothing: {running_elsewhere(running, cassette.describe())}"]
        removed = delete_unchanged(cassette, ledger, _stamps_of(index, unused))
        lines.append(f"llm_replay: --llm-prune deleted {removed} {'recording' if removed == 1 else 'recordings'} no longer used by the tests that ran, from {cassette.describe()}")
        failed = sum(not test.complete_pass for test in outcome.tests.values())
        if failed:
            lines.append(f"llm_replay: --llm-prune kept the recordings of the {failed} test(s) that did not pass")
        return lines
    finally:
        cassette.close()


def _deleted_tests(outcome: RunOutcome, owners: Iterable[str], rootdir: Path) -> set[str]:
    """The owners this run shows were deleted or renamed: missing from a file it collected whole, with, for a
    parametrized case, its test function gone too, and with a name the file's text no longer spells. A case missing
    while its function was collected may be one this machine does not generate (parameters from the platform, the
    installed packages, the environment); a test missing while its file still names it may be one this machine does
    not define (``if sys.platform == ...: def test_x``)."""
    functions = {test.split("[", 1)[0] for test in outcome.collected}
    missing = {test for test in outcome.vanished(owners) if test.split("[", 1)[0] not in functions}
    sources: dict[str, bytes | None] = {}
    return {test for test in missing if not still_defined(test, rootdir, sources)}


# A module that names its tests at run time (``globals()["test_" + case] = ...``, the builtin ``setattr(cls, name, ...)``,
# ``exec``) may define one this run did not make: which it makes cannot be read off its text. ``monkeypatch.setattr(``
# is no such call (preceded by a dot).
_MAKES_TESTS_BY_NAME = re.compile(rb"(?<![\w.])(?:globals\(\)|setattr\(|exec\()")


def _surely_deleted(vanished: set[str], ledger: "RunLedger", checkout: tuple[str, str] | None, rootdir: Path) -> set[str]:
    """The tests a file this run collected whole lacks that are deleted, not another branch's: not those whose latest
    pass was made on another branch (the file there defines them), nor those that hold what they used in a run they did
    not pass (they hold it until they pass or llm-replay rm --test lets go, as where their file is absent). None where
    the bookkeeping cannot be read."""
    try:
        passes, holds = ledger.passes(), ledger.holds()
    except CassetteError:
        return set()
    here, _ = on_this_branch(passes, checkout, rootdir)
    return vanished - (passes.keys() - here.keys()) - {test for tests in holds.values() for test in tests}


def still_defined(test: str, rootdir: Path, sources: dict[str, bytes | None]) -> bool:
    """Whether the test's file exists and still spells each of its names (class, function) as a whole word: a test this
    run did not collect may be one it does not define (``if sys.platform == ...:``), not a deleted one. A file that
    cannot be read, or that makes tests by a name it never spells (``_MAKES_TESTS_BY_NAME``), counts as defining it.
    ``sources``: each file's text as read so far (one read per file)."""
    file, *names = test.split("[", 1)[0].split("::")
    if file not in sources:
        try:
            sources[file] = (rootdir / file).read_bytes()
        except FileNotFoundError:
            sources[file] = b""
        except OSError:
            sources[file] = None
    source = sources[file]
    if source is None or _MAKES_TESTS_BY_NAME.search(source):
        return True
    # a doctest's name is dotted (module.function): its last part is what the file spells
    words = (name.rsplit(".", 1)[-1].encode() for name in names)
    return bool(source) and all(re.search(rb"(?<!\w)" + re.escape(word) + rb"(?!\w)", source) for word in words)


def _unknown_use_line(crashed: list[str]) -> str:
    """Why --llm-prune deleted nothing: a test whose worker died, or that the run was interrupted in, may have used any
    recording."""
    return f"llm_replay: --llm-prune deleted nothing: {_stopped_in(crashed)}; run the tests again to prune"


def _stopped_in(crashed: list[str]) -> str:
    """Which test's use is unknown: the one the run was interrupted in, or those whose pytest-xdist worker died."""
    if not crashed:
        return "the run was interrupted, so what its last test used is unknown"
    others = f" (and {len(crashed) - 1} more)" if len(crashed) > 1 else ""
    return f"the pytest-xdist worker running {crashed[0]}{others} crashed, so what it used is unknown"


def _unknown_use(outcome: RunOutcome, running: list[LiveSession], cassette: "Store") -> str | None:
    """Why a recording a refresh replaced may still be used by a test no report of this run tells of (this run stopped
    in a test, or another session runs), and when a prune takes it; None when every use is known."""
    if outcome.crashed or outcome.interrupted:
        return f"{_stopped_in(outcome.crashed)}; a prune deletes it once the tests have run again"
    if running:
        return running_elsewhere(running, cassette.describe(), "this refresh replaced", "a prune deletes it")
    return None


def settle_ownership(
    cassette: "Store",
    outcome: RunOutcome,
    passes: Mapping[str, TestPass],
    started_at: str,
    index: Iterable[tuple[Key, tuple[str, ...], str]],
    holds: Mapping[Key, set[str]],
    unknown_use: str | None,
) -> list[str]:
    """Every test owns what it used (in its latest pass, or in a run it did not pass since: ``holds``); a test that
    passed a refresh owns only what it used in it.

    What a refreshed test owned before and no longer uses loses it as owner; a recording left with no owner
    (stored, or a test whose latest pass used it) is deleted: the refresh replaced it, even if its key changed.
    Recordings written after this run began are never touched (another session may be recording). Where some test's use
    is unknown (``unknown_use`` says why: another session runs, this run stopped in a test), a replaced recording stays
    with its owners: that test may replay it, and a prune takes it later (its refreshed owners passed without it).
    """
    tests = outcome.tests
    refreshed = {test for test, result in tests.items() if result.refreshed and result.complete_pass}
    users: dict[Key, set[str]] = {}
    for test, result in tests.items():
        for key in result.used:
            users.setdefault(key, set()).add(test)
    for test, last in passes.items():
        for key in last.used:
            users.setdefault(key, set()).add(test)
    for key, holders in holds.items():
        users.setdefault(key, set()).update(holders)
    changed: dict[Key, OwnerChange] = {}
    replaced: dict[Key, str] = {}  # each with the recorded_at it must still have (not written again meanwhile)
    kept = 0
    for key, stored, recorded_at in index:
        owners = set(stored) | users.get(key, set())
        dropped = {test for test in owners & refreshed if key not in tests[test].used}
        if not written_before_run(recorded_at, started_at):
            dropped = set()
        if dropped and dropped == owners:
            if unknown_use is None:
                replaced[key] = recorded_at
                continue
            dropped, kept = set(), kept + 1
        owners -= dropped
        if owners != set(stored):
            changed[key] = OwnerChange(added=tuple(sorted(owners - set(stored))), removed=tuple(sorted(dropped)))
    cassette.change_owners(changed)
    removed = cassette.delete(replaced.keys(), recorded_at=replaced)
    lines = [f"llm_replay: refresh replaced {removed} earlier {'recording' if removed == 1 else 'recordings'} of the refreshed tests"] if removed else []
    if kept:
        lines.append(f"llm_replay: refresh kept {kept} earlier {'recording' if kept == 1 else 'recordings'} of the refreshed tests: {unknown_use}")
    return lines


def unused_recordings(cassette: "Store", ledger: "RunLedger", rootdir: Path, command: str = "llm-replay prune", deleting: bool = False) -> list[Key]:
    """The recordings whose owning tests all passed, in later runs, without them, and that no test which has not
    passed since used (``ls --unused``, ``rm --unused``). ``deleting``: none while another session runs, as for prune
    (CommandError)."""
    running = others_running(ledger) if deleting else []  # before the bookkeeping is read, as for prune
    unused = list(_unused_and_elsewhere(cassette, ledger, rootdir, command)[0])
    _not_while_running(running, len(unused), cassette)
    return unused


def _not_while_running(running: list[LiveSession], count: int, cassette: "Store") -> None:
    """A prune that would delete ``count`` recordings while another session runs deletes nothing: what that session's
    tests replay is not in the bookkeeping yet (CommandError naming it)."""
    if running and count:
        raise CommandError(f"deleted nothing ({count} {'recording' if count == 1 else 'recordings'} would go): {running_elsewhere(running, cassette.describe())}")


def prune_unused(cassette: "Store", ledger: "RunLedger", rootdir: Path, dry_run: bool = False) -> list[str]:
    """``llm-replay prune``: delete every recording whose owning tests all passed, in later runs, without it; nothing
    while another session runs against the cassette (CommandError: what it replays is not in the bookkeeping yet)."""
    unreadable: dict[Key, str] = {}
    running = others_running(ledger)  # before the bookkeeping is read: a session that ended since has its use there
    unused, elsewhere, kept = _unused_and_elsewhere(cassette, ledger, rootdir, "llm-replay prune", unreadable)
    if dry_run:
        noun = "recording" if len(unused) == 1 else "recordings"
        lines = [f"would delete {len(unused)} {noun} that every owning test passed without:", *(f"  {fingerprint[:12]}#{occurrence}" for fingerprint, occurrence in unused)]
        if running and unused:
            lines.append(f"(not now: {running_elsewhere(running, cassette.describe())})")
    else:
        _not_while_running(running, len(unused), cassette)
        removed = delete_unchanged(cassette, ledger, unused)
        lines = [f"deleted {removed} {'recording' if removed == 1 else 'recordings'} that every owning test passed without, from {cassette.describe()}"]
    if kept:
        tests = sorted({test for holders in kept.values() for test in holders})
        shown = ", ".join(tests[:5]) + (f" and {len(tests) - 5} more" if len(tests) > 5 else "")
        lines.append(
            f"kept {len(kept)} {'recording' if len(kept) == 1 else 'recordings'} used by tests whose latest run did not pass: "
            f"{shown} (they go once those tests pass without them; a test deleted since lets them go with llm-replay rm --test <its id>)"
        )
    if elsewhere:
        lines.append(
            f"({elsewhere} test(s) last passed on another branch, or on a commit this branch no longer holds: those "
            "passes free nothing here; run the tests on this branch first)"
        )
    return lines + (_unreadable_owner_lines(cassette, unreadable, ledger.passes(), ledger.holds()) if unreadable else [])


def _unreadable_owner_lines(cassette: "Store", unreadable: Mapping[Key, str], passes: Mapping[str, TestPass], holds: Mapping[Key, set[str]]) -> list[str]:
    """What to say of each recording whose owners could not be read (left out of the bookkeeping, never deleted): which
    it is, and the refresh that rewrites it, of the tests the bookkeeping saw use it."""
    lines = []
    for key, reason in unreadable.items():
        users = sorted({test for test, last in passes.items() if key in last.used} | holds.get(key, set()))
        refresh = " or ".join(f"pytest --llm-mode=refresh '{test}'" for test in users) or "pytest --llm-mode=refresh <the test that asks it>"
        lines.append(
            f"recording {key[0]}#{key[1]} in {cassette.describe()}: its owners cannot be read ({reason}), so it is left out of the "
            f"bookkeeping and pruning, and the rest is kept; a refresh of the test that asks it rewrites it: {refresh}"
        )
    return lines


def on_this_branch(passes: Mapping[str, TestPass], checkout: tuple[str, str] | None, rootdir: Path) -> tuple[dict[str, TestPass], int]:
    """The passes that speak for the code checked out now, and how many do not. The bookkeeping outlives a checkout:
    a test that passed on another branch without a recording (it asks something else there, committed or not) says
    nothing of whether this branch's test still needs it. In git, a pass counts when it was made on this branch at
    its commit or an ancestor of it (not one made where no commit could be read, nor one older bookkeeping kept
    without its branch); outside git, every pass made outside git."""
    if checkout is None:
        here = {test: test_pass for test, test_pass in passes.items() if test_pass.checkout is None}
    else:
        branch, head = checkout
        same_branch = {test: test_pass.checkout[1] for test, test_pass in passes.items() if test_pass.checkout and test_pass.checkout[0] == branch}
        ancestors = (in_history(set(same_branch.values()) - {head}, rootdir) | {head}) if head else set()
        here = {test: test_pass for test, test_pass in passes.items() if same_branch.get(test) in ancestors}
    return here, len(passes) - len(here)


def _unused_and_elsewhere(
    cassette: "Store", ledger: "RunLedger", rootdir: Path, command: str, unreadable: dict[Key, str] | None = None
) -> tuple[dict[Key, str], int, dict[Key, set[str]]]:
    """What the rule frees (each with its recorded_at as read), how many passes were made elsewhere, and what tests
    that have not passed since hold of it. ``unreadable``: where to note a recording whose owners cannot be read (left
    out) rather than stop at it."""
    passes = ledger.passes()
    if not passes:
        raise CommandError(
            f"no passing test is recorded for {cassette.describe()} (bookkeeping {ledger.path}): run the tests once "
            f"(pytest, in this project; the recordings of the tests that pass without them become prunable), then {command}"
        )
    here, elsewhere = on_this_branch(passes, checked_out(rootdir), rootdir)
    files = where_test_files_are(cassette, rootdir)
    holds = ledger.holds()
    index = cassette.index(owned=True, unreadable=unreadable)
    free = prunable(index, here, files, elsewhere=passes.keys() - here.keys())
    return _stamps_of(index, [key for key in free if key not in holds]), elsewhere, {key: holds[key] for key in free if key in holds}


def delete_unchanged(cassette: "Store", ledger: "RunLedger", stamped: Mapping[Key, str]) -> int:
    """Delete the chosen recordings that still have the recorded_at read when they were chosen, and forget in the
    bookkeeping those that went: one another session wrote again meanwhile (a refresh) stays, and so does its use."""
    removed = cassette.delete(stamped, stamped)
    if removed == len(stamped):
        ledger.forget(stamped)
    else:  # rare: read what is left rather than guess which stayed (a row whose owners cannot be read is left too)
        unreadable: dict[Key, str] = {}
        left = {key for key, _, _ in cassette.index(unreadable=unreadable)} | unreadable.keys()
        ledger.forget([key for key in stamped if key not in left])
    return removed


def _stamps_of(index: Iterable[tuple[Key, tuple[str, ...], str]], keys: Iterable[Key]) -> dict[Key, str]:
    """``keys`` with the recorded_at the index read: a delete takes only a recording still stamped so, so one that
    another session (another machine's refresh) wrote again after the index was read is kept."""
    stamps = {key: recorded_at for key, _, recorded_at in index}
    return {key: stamps[key] for key in keys}


def where_test_files_are(cassette: "Store", rootdir: Path) -> Path | None:
    """Where an owner's test file must be for it to hold a recording: this checkout for a file in it; none for a
    cassette on a server (Redis), which checkouts of other branches share: a test file missing here may be theirs."""
    return rootdir if cassette.path is not None else None
