"""``llm-replay rm``: delete chosen recordings so that nothing of them stays in the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..stores.summaries import summaries_of
from .listing import key_text, list_lines
from .selection import Listed, Selection, owned_by

if TYPE_CHECKING:
    from ..stores.ledger import RunLedger
    from ..stores.base import Store


@dataclass(frozen=True)
class Removal:
    """What ``rm`` will delete, and what it keeps because another test uses it too."""

    doomed: list[Listed]
    shared: list[Listed]
    test: str | None

    def lines(self) -> list[str]:
        """The recordings to delete (as ls shows them) and those kept, with why."""
        lines = list_lines(self.doomed)[:-1] if self.doomed else []
        for row in self.shared:
            others = ", ".join(owner for owner in row.tests if not owned_by(owner, self.test or ""))
            lines.append(f"kept {key_text(row)}: also used by {others} (llm-replay rm {key_text(row)} deletes it anyway)")
        return lines


def plan_removal(cassette: "Store", selection: Selection) -> Removal:
    """What ``selection`` picks; with ``--test``, a recording another test also uses is kept (deleting it
    would break that test)."""
    rows = list(selection.select(summaries_of(cassette, shown=True)))
    test = selection.test
    shared = [row for row in rows if test is not None and any(not owned_by(owner, test) for owner in row.tests)]
    return Removal([row for row in rows if row not in shared], shared, test)


def erase(cassette: "Store", ledger: "RunLedger", removal: Removal) -> str:
    """Delete the planned recordings (secure delete, and the file compacted as the cassette closes: their bytes
    leave the file), and forget them in the run bookkeeping."""
    keys = [row.key for row in removal.doomed]
    removed = cassette.delete(keys)
    ledger.forget(keys)
    erased = " (erased from the file, not only unlinked)" if isinstance(cassette.path, Path) else ""
    return f"deleted {removed} recording{'s' if removed != 1 else ''} from {cassette.describe()}{erased}"
