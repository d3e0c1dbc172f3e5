"""The message of a strict miss: what was asked, the closest recording, a field diff, the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .fingerprint import CanonicalRequest, differences, distance
from .langchain_keys import describe_llm, describe_setting_difference, is_langchain_request, prompt_text

if TYPE_CHECKING:
    from .interaction import Interaction
    from .recorder import Cassette

_MAX_DIFF_LINES = 12
_WIDTH = 160


def explain_miss(request: CanonicalRequest, occurrence: int, cassette: "Cassette", record_command: str | None) -> str:
    """A message for the person reading the failed CI log."""
    if is_langchain_request(request):
        return _explain_langchain_miss(request, occurrence, cassette, record_command)
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


def _closest(request: CanonicalRequest, interactions: Iterable["Interaction"]) -> "Interaction | None":
    best = None
    best_distance = None
    for interaction in interactions:
        candidate_distance = distance(interaction.request, request)
        if best_distance is None or candidate_distance < best_distance:
            best, best_distance = interaction, candidate_distance
    return best


def _closest_lines(request: CanonicalRequest, cassette: "Cassette") -> list[str]:
    best = _closest(request, cassette.interactions())
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


def _explain_langchain_miss(request: CanonicalRequest, occurrence: int, cassette: "Cassette", record_command: str | None) -> str:
    """The LangChain layer's miss: the model and prompt, and which settings differ from the closest entry."""
    lines = ["no recording for this LangChain cache lookup (mode 'replay': the model is not called)"]
    lines.append(f"  llm:       {describe_llm(request)}")
    lines.append(f"  prompt:    {_shorten(prompt_text(request))}")
    if occurrence:
        lines.append(f"  repeat:    occurrence {occurrence} of this lookup (repeats='sequence'); fewer were recorded")
    entries = [interaction for interaction in cassette.interactions() if is_langchain_request(interaction.request)]
    lines.append(f"  cassette:  {cassette.describe()} ({len(entries)} LangChain entr{'ies' if len(entries) != 1 else 'y'})")
    best = _closest(request, entries)
    if best is None:
        lines.append("  closest entry: none (no LangChain entry is recorded)")
    else:
        recorded_by = f" by {', '.join(best.tests)}" if best.tests else ""
        lines.append(f"  closest entry: {describe_llm(best.request)}, recorded {best.recorded_at}{recorded_by}:")
        described = [describe_setting_difference(difference, _WIDTH) for difference in differences(best.request, request)]
        shown = [line for line in described if line is not None] or ["same prompt and settings, but not at this occurrence"]
        lines.extend(f"    {line}" for line in shown[:_MAX_DIFF_LINES])
        if len(shown) > _MAX_DIFF_LINES:
            lines.append(f"    … and {len(shown) - _MAX_DIFF_LINES} more differences")
    lines.append(f"  to record it: {record_command or 'run again in record mode (with an API key)'}")
    return "\n".join(lines)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"
