"""The message of a strict miss: what was asked, the closest recording, a field diff, the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .fingerprint import CanonicalRequest, differences, distance

if TYPE_CHECKING:
    from .recorder import Cassette

_MAX_DIFF_LINES = 12
_WIDTH = 160


def explain_miss(request: CanonicalRequest, occurrence: int, cassette: "Cassette", record_command: str | None) -> str:
    """A message for the person reading the failed CI log."""
    lines = ["no recording for this request (mode 'replay': the network is not used)"]
    lines.append(f"  request:   {request.method} {request.url}")
    if request.model:
        lines.append(f"  model:     {request.model}")
    prompt = request.prompt()
    if prompt is not None:
        lines.append(f"  prompt:    {_shorten(prompt)}")
    elif request.body is not None:
        lines.append(f"  body:      {_shorten(request.to_json())}")
    if occurrence:
        lines.append(f"  repeat:    occurrence {occurrence} of this request (repeats='sequence'); fewer were recorded")
    count = len(cassette)
    lines.append(f"  cassette:  {cassette.describe()} ({count} recording{'s' if count != 1 else ''})")
    lines.extend(_closest_lines(request, cassette))
    lines.append(f"  to record it: {record_command or 'run again with --llm-mode=record (and an API key)'}")
    return "\n".join(lines)


def _closest_lines(request: CanonicalRequest, cassette: "Cassette") -> list[str]:
    best = None
    best_distance = None
    for interaction in cassette.interactions():
        candidate_distance = distance(interaction.request, request)
        if best_distance is None or candidate_distance < best_distance:
            best, best_distance = interaction, candidate_distance
    if best is None:
        return ["  closest recording: none (the cassette is empty)"]
    recorded_by = f" by {', '.join(best.tests)}" if best.tests else ""
    header = f"  closest recording: {best.request.method} {best.request.url}, recorded {best.recorded_at}{recorded_by}"
    diff = differences(best.request, request)
    if not diff:
        return [header, "    same request, but not at this occurrence"]
    shown = [f"    {difference.describe(_WIDTH)}" for difference in diff[:_MAX_DIFF_LINES]]
    if len(diff) > _MAX_DIFF_LINES:
        shown.append(f"    … and {len(diff) - _MAX_DIFF_LINES} more differing fields")
    return [header + " (~ changed: recorded -> requested, + only in the request, - only in the recording):", *shown]


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"
