"""What changed between two cassettes: recordings added, removed, and answered differently (by drift class)."""

from __future__ import annotations

import difflib
from collections import Counter
from typing import TYPE_CHECKING

from ..engine.drift import classify
from ..engine.drift_classes import DRIFT_CLASSES, IDENTICAL
from ..model.interaction import Interaction
from ..stores.union import same_answer
from .listing import as_printed, endpoint_text, key_text, prompt_words, show_lines

if TYPE_CHECKING:
    from ..stores.base import Store

_MAX_BODY_DIFF_LINES = 30


def diff_lines(old: "Store", new: "Store") -> list[str]:
    """``+``/``-``/``~`` lines by key, with a short diff of each changed recording; empty when equal."""
    before = {i.key: as_printed(i) for i in old.interactions()}
    after = {i.key: as_printed(i) for i in new.interactions()}
    lines: list[str] = []
    added = removed = 0
    changed: Counter[str] = Counter()  # by drift class, as refresh and verify name them
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key), after.get(key)
        if was is None:
            added += 1
            lines.append(f"+ {_summary(now)}")  # type: ignore[arg-type]
        elif now is None:
            removed += 1
            lines.append(f"- {_summary(was)}")
        elif not same_answer(was, now):
            classes = classify(was.response, now.response)
            changed.update(classes)
            lines.append(f"~ {_summary(now)}  [{', '.join(classes) if classes != (IDENTICAL,) else 'same answer, other ids or metadata'}]")
            lines.extend(_changes(was, now))
    if lines:
        total = sum(1 for line in lines if line.startswith("~ "))
        by_class = f" ({', '.join(f'{changed[name]} {name}' for name in (*DRIFT_CLASSES, IDENTICAL) if changed[name])})" if total else ""
        lines.append(f"{added} added, {removed} removed, {total} changed{by_class} ({old.describe()} -> {new.describe()})")
    return lines


def _summary(interaction: Interaction) -> str:
    return f"{key_text(interaction)}  {endpoint_text(interaction)}  {interaction.request.model or '-'}  {prompt_words(interaction)}"


def _changes(was: Interaction, now: Interaction) -> list[str]:
    diff = list(difflib.unified_diff(show_lines(was), show_lines(now), "recorded before", "recorded now", n=1, lineterm=""))
    shown = ["    " + line for line in diff[2:][:_MAX_BODY_DIFF_LINES]]
    if len(diff) - 2 > _MAX_BODY_DIFF_LINES:
        shown.append(f"    … {len(diff) - 2 - _MAX_BODY_DIFF_LINES} more lines (llm-replay show {key_text(now)} --cassette …)")
    return shown
