"""``llm_fail_unplayed``: the failure of a test that left recordings it owns unplayed (dead recordings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.interaction import Key

if TYPE_CHECKING:
    from ..engine.recorder import Recorder


def unplayed_message(recorder: Recorder, unplayed: list[Key]) -> str:
    """What the test left unplayed, one recording a line, and how to be rid of them."""
    lines = [f"llm_replay: this test owns {len(unplayed)} recording(s) in {recorder.cassette.describe()} that it did not replay (llm_fail_unplayed = true):"]
    for fingerprint, occurrence in unplayed:
        found = recorder.cassette.get(fingerprint, occurrence)
        where = f"{found.request.method} {found.request.url}, recorded {found.recorded_at or '-'}" if found else "gone"
        lines.append(f"  {fingerprint[:12]}{f'#{occurrence}' if occurrence else ''}  {where}")
    lines.append(
        "the code no longer sends these requests: once a complete run passes, `llm-replay prune` (or pytest --llm-prune) deletes "
        "what no test used; or re-record this test: pytest --llm-mode=refresh " + (recorder.test_id or "")
    )
    return "\n".join(lines)
