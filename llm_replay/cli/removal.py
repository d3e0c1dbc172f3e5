"""``llm-replay rm``: delete chosen recordings so that nothing of them stays in the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..engine.pruning import delete_unchanged
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
    """What ``rm`` will delete, and what it keeps because another test uses it too."""

    doomed: list[Listed]
    shared: list[tuple[Listed, list[str]]]  # each with the other tests that use it
    test: str | None

    def lines(self) -> list[str]:
        """The recordings to delete (as ls shows them) and those kept, with why."""
        lines = list_lines(self.doomed)[:-1] if self.doomed else []
        for row, others in self.shared:
            lines.append(f"kept {key_text(row)}: also used by {', '.join(others)} (llm-replay rm {key_text(row)} deletes it anyway)")
        if self.test is not None and not self.doomed and not self.shared:  # a mistyped id would otherwise pass for done
            lines.append(
                f"no recording owned by test {self.test!r} matches: llm-replay ls shows each recording's tests "
                "(--test takes a node id as pytest prints it, a file, a folder or a class)"
            )
        return lines


def plan_removal(cassette: "Store", selection: Selection, passes: Mapping[str, TestPass], holds: Mapping[Key, set[str]]) -> Removal:
    """What ``selection`` picks; with ``--test``, a recording another test also uses is kept (deleting it
    would break that test). Users are its stored owners, the tests whose latest pass used it (a run that only
    replays writes no owner into the cassette; the run bookkeeping has it) and those that used it in runs they did not
    pass since (``holds``)."""
    rows = list(selection.select(summaries_of(cassette, shown=True)))
    test = selection.test
    if test is None:
        return Removal(rows, [], test)
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
    return Removal(doomed, shared, test)


def erase(cassette: "Store", ledger: "RunLedger", removal: Removal) -> str:
    """Delete the planned recordings as they were listed (secure delete, and the file compacted as the cassette
    closes: their bytes leave the file), and forget them in the run bookkeeping. A recording another session wrote
    again after the listing (a refresh) is not the one chosen: it stays."""
    removed = delete_unchanged(cassette, ledger, {row.key: row.row.recorded_at for row in removal.doomed})
    erased = " (erased from the file, not only unlinked)" if isinstance(cassette.path, Path) else ""
    return f"deleted {removed} recording{'s' if removed != 1 else ''} from {cassette.describe()}{erased}"
