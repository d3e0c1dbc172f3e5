"""The end of a run and pruning: remember what the run used, report what it did not, delete it when asked.

The usage is written once, at the end of the session, in one transaction (never per replay), and
only when the run may write the cassette: a strict CI replay leaves the committed file untouched.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..errors import CommandError
from ..model.interaction import Key
from ..model.runs import RunOutcome, unused_keys

if TYPE_CHECKING:
    from ..stores.sqlite import SQLiteCache


def finish_run(
    path: Path,
    outcome: RunOutcome,
    replays: Mapping[Key, int],
    *,
    uid: str,
    rootdir: Path,
    write_usage: bool,
    prune: bool,
) -> list[str]:
    """Summary lines for the end of a pytest run; records its usage and prunes when asked and allowed."""
    from ..stores.sqlite import SQLiteCache

    if not path.is_file():
        return ["llm_replay: --llm-prune: no cassette yet, nothing to prune"] if prune else []
    run = outcome.record(uid, datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    cassette = SQLiteCache(path, readonly=not (write_usage or prune))
    try:
        if write_usage or prune:
            cassette.record_run(run, replays)
        # A whole-suite run covers every recording whoever made it: the keys alone say what it left unused.
        index = cassette.index() if run.scope is not None else [(key, ()) for key in cassette.keys()]
        unused = unused_keys(index, replays, run, rootdir)
        lines = [f"llm_replay: {len(unused)} recording{'s' if len(unused) != 1 else ''} not used by this run"]
        if not prune:
            if unused:
                lines[0] += " (pytest --llm-prune deletes them after a run where every test passes)"
            return lines
        reason = outcome.incomplete_because()
        if reason is not None:
            lines.append(f"llm_replay: --llm-prune refused: {reason}; nothing was deleted. Fix that, then run pytest --llm-prune again")
        else:
            removed = cassette.delete(unused)
            lines.append(f"llm_replay: --llm-prune deleted {removed} unused recording{'s' if removed != 1 else ''} from {path}")
        return lines
    finally:
        cassette.close()


def _later(recorded_at: str, finished_at: str) -> bool:
    try:
        return datetime.fromisoformat(recorded_at) > datetime.fromisoformat(finished_at)
    except ValueError:
        return True  # an unreadable date is never a reason to delete

def prune_after_last_complete_run(cassette: "SQLiteCache", rootdir: Path, dry_run: bool = False) -> list[str]:
    """``llm-replay prune``: delete what the last complete run could have used and did not."""
    run = cassette.last_complete_run()
    if run is None:
        raise CommandError(
            f"no complete pytest run is recorded in {cassette.describe()}: run the whole suite once (pytest, every test passing, "
            "in a mode that may write the cassette, e.g. --llm-mode=record), then llm-replay prune"
        )
    # Used by that run or a later one, or recorded after it: that run could not have used them.
    kept = cassette.keys_used_since(run.finished_at) | {i.key for i in cassette.interactions() if _later(i.recorded_at, run.finished_at)}
    unused = unused_keys(cassette.index(), kept, run, rootdir)
    scope = "the whole suite" if run.scope is None else f"{len(run.scope)} test files"
    if dry_run:
        return [f"would delete {len(unused)} recordings not used by the last complete run ({run.finished_at}, {scope}):", *(f"  {fingerprint[:12]}#{occurrence}" for fingerprint, occurrence in unused)]
    removed = cassette.delete(unused)
    return [f"deleted {removed} recordings not used by the last complete run ({run.finished_at}, {scope}) from {cassette.describe()}"]
