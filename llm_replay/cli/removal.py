"""``llm-replay rm``: delete chosen recordings so that nothing of them stays in the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..engine.pruning import delete_unchanged, still_defined
from ..model.interaction import OwnerChange
from ..stores.summaries import summaries_of
from .listing import key_text, list_lines
from .selection import Listed, Selection, owned_by

if TYPE_CHECKING:
    from ..model.interaction import Key
    from ..model.runs import TestPass
    from ..stores.ledger import RunLedger
    from ..stores.base import Store


@dataclass(frozen=True)
class Removal:
    """What ``rm`` will delete, what it keeps because another test uses it too, and the chosen tests this checkout no
    longer defines (deleted: from now on they own and hold nothing, so what they shared goes once its other tests let go)."""

    doomed: list[Listed]
    shared: list[tuple[Listed, list[str]]]  # each with the other tests that use it
    test: str | None
    released: tuple[str, ...] = ()
    unreadable: Mapping[Key, str] = field(default_factory=dict)  # doomed (chosen without --test) with owners that cannot be read: why

    def lines(self) -> list[str]:
        """The recordings to delete (as ls shows them) and those kept, with why."""
        lines = list_lines(self.doomed)[:-1] if self.doomed else []
        for row in self.doomed:
            if row.key in self.unreadable:
                lines.append(f"{key_text(row)}: its owners cannot be read ({self.unreadable[row.key]}); it goes all the same (without --test, owners choose nothing)")
        for row, others in self.shared:
            lines.append(f"kept {key_text(row)}: also used by {', '.join(others)} (llm-replay rm {key_text(row)} deletes it anyway)")
        if self.released:
            lines.append(
                f"not defined in this checkout: {', '.join(self.released)}; rm --test lets go of what it owned or used with other "
                "tests (the bookkeeping forgets it, and it is no owner of what is kept)"
            )
        if self.test is not None and not self.doomed and not self.shared and not self.released:  # a mistyped id would otherwise pass for done
            lines.append(
                f"no recording owned by test {self.test!r} matches: llm-replay ls shows each recording's tests "
                "(--test takes a node id as pytest prints it, a file, a folder or a class)"
            )
        return lines


def plan_removal(
    cassette: "Store", selection: Selection, passes: Mapping[str, TestPass], holds: Mapping[Key, set[str]], rootdir: Path | None = None
) -> Removal:
    """What ``selection`` picks; with ``--test``, a recording another test also uses is kept (deleting it
    would break that test). Users are its stored owners, the tests whose latest pass used it (a run that only
    replays writes no owner into the cassette; the run bookkeeping has it) and those that used it in runs they did not
    pass since (``holds``). A chosen test the checkout under ``rootdir`` no longer defines is released (none without one)."""
    test = selection.test
    if test is None:  # by key or by filters alone: owners decide nothing, so a row whose owners cannot be read may go
        unreadable: dict[Key, str] = {}
        rows = list(selection.select(summaries_of(cassette, shown=True, keys=selection.only, unreadable=unreadable)))
        return Removal(rows, [], test, unreadable={row.key: unreadable[row.key] for row in rows if row.key in unreadable})
    rows = list(selection.select(summaries_of(cassette, shown=True)))
    users: dict[Key, set[str]] = {key: set(holders) for key, holders in holds.items()}
    for user, last in passes.items():
        for key in last.used:
            users.setdefault(key, set()).add(user)
    doomed, shared = [], []
    for row in rows:
        others = sorted(owner for owner in {*row.tests, *users.get(row.key, ())} if not owned_by(owner, test))
        if others:
            shared.append((row, others))
        else:
            doomed.append(row)
    if rootdir is None:
        return Removal(doomed, shared, test)
    named = {owner for row in rows for owner in row.tests} | {user for holders in users.values() for user in holders}
    return Removal(doomed, shared, test, _deleted(named, test, rootdir))


def _deleted(tests: set[str], selector: str, rootdir: Path) -> tuple[str, ...]:
    """The pytest tests (``path::name``) ``selector`` names that the checkout no longer defines: over a cassette shared
    with other checkouts (Redis) no run can tell them deleted, so they held what they shared with other tests for ever.
    None where the rootdir holds no test file of any of ``tests`` (rm run outside the project, with --cassette)."""
    files = {test.split("::", 1)[0] for test in tests if "::" in test}
    if not any((rootdir / file).is_file() for file in files):
        return ()
    sources: dict[str, bytes | None] = {}
    return tuple(sorted(test for test in tests if "::" in test and owned_by(test, selector) and not still_defined(test, rootdir, sources)))


def erase(cassette: "Store", ledger: "RunLedger", removal: Removal) -> str:
    """Delete the planned recordings as they were listed (secure delete, and the file compacted as the cassette
    closes: their bytes leave the file), and forget them in the run bookkeeping. A recording another session wrote
    again after the listing (a refresh) is not the one chosen: it stays. Released tests stop owning what is kept, and
    the bookkeeping forgets them."""
    removed = delete_unchanged(cassette, ledger, {row.key: row.row.recorded_at for row in removal.doomed})
    if removal.released:
        released = set(removal.released)
        # the tests it shared with own it from now on: a recording left with no owner would never be pruned
        changes = {row.key: OwnerChange(added=tuple(others), removed=removal.released) for row, others in removal.shared if released.intersection(row.tests)}
        cassette.change_owners(changes)
        ledger.release(removal.released)
    erased = " (erased from the file, not only unlinked)" if isinstance(cassette.path, Path) else ""
    return f"deleted {removed} recording{'s' if removed != 1 else ''} from {cassette.describe()}{erased}"
