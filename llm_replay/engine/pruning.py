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
from ..stores.base import run_history

if TYPE_CHECKING:
    from ..stores.base import Store


def finish_run(
    cassette_spec: str,
    outcome: RunOutcome,
    replays: Mapping[Key, int],
    *,
    uid: str,
    rootdir: Path,
    write_usage: bool,
    prune: bool,
) -> list[str]:
    """Summary lines for the end of a pytest run; records its usage and prunes when asked and allowed."""
    from ..stores.spec import open_store

    writes = write_usage or prune
    cassette = open_store(cassette_spec, readonly=True)
    try:
        if not len(cassette):  # never create a cassette only to note that nothing was used
            return ["llm_replay: --llm-prune: no cassette yet, nothing to prune"] if prune else []
        if writes:
            cassette.close()
            cassette = open_store(cassette_spec)
        run = outcome.record(uid, datetime.now(timezone.utc).isoformat(timespec="microseconds"))
        if writes:
            run_history(cassette, "--llm-prune and the unused-recordings count").record_run(run, replays)
        unused = unused_keys(cassette.index(), replays, run, rootdir)
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
            lines.append(f"llm_replay: --llm-prune deleted {removed} unused recording{'s' if removed != 1 else ''} from {cassette.describe()}")
        return lines
    finally:
        cassette.close()


def _later(recorded_at: str, finished_at: str) -> bool:
    try:
        return datetime.fromisoformat(recorded_at) > datetime.fromisoformat(finished_at)
    except ValueError:
        return True  # an unreadable date is never a reason to delete

def prune_after_last_complete_run(cassette: "Store", rootdir: Path, dry_run: bool = False) -> list[str]:
    """``llm-replay prune``: delete what the last complete run could have used and did not."""
    history = run_history(cassette, "llm-replay prune")
    run = history.last_complete_run()
    if run is None:
        raise CommandError(
            f"no complete pytest run is recorded in {cassette.describe()}: run the whole suite once (pytest, every test passing, "
            "in a mode that may write the cassette, e.g. --llm-mode=record), then llm-replay prune"
        )
    # Used by that run or a later one, or recorded after it: that run could not have used them.
    kept = history.keys_used_since(run.finished_at) | {i.key for i in cassette.interactions() if _later(i.recorded_at, run.finished_at)}
    unused = unused_keys(cassette.index(), kept, run, rootdir)
    scope = "the whole suite" if run.scope is None else f"{len(run.scope)} test files"
    if dry_run:
        return [f"would delete {len(unused)} recordings not used by the last complete run ({run.finished_at}, {scope}):", *(f"  {fingerprint[:12]}#{occurrence}" for fingerprint, occurrence in unused)]
    removed = cassette.delete(unused)
    return [f"deleted {removed} recordings not used by the last complete run ({run.finished_at}, {scope}) from {cassette.describe()}"]
