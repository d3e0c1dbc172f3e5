"""The classes of drift by name (what ``--llm-fail-on-drift`` and ``diff`` speak of), apart from the comparing
itself: the pytest plugin reads them at start-up, and the comparing needs the whole response model."""

from __future__ import annotations

from typing import Iterable

# Most severe first: a changed status says more than a changed word.
DRIFT_CLASSES = ("status", "finish_reason", "tool_calls", "shape", "text")
IDENTICAL = "identical"


def parse_drift_classes(value: str | Iterable[str], source: str) -> frozenset[str]:
    """``--llm-fail-on-drift=text,status`` as a set of classes; an unknown name is an error naming ``source``."""
    names = value.replace(",", " ").split() if isinstance(value, str) else [str(name).strip() for name in value]
    unknown = [name for name in names if name not in DRIFT_CLASSES]
    if unknown:
        raise ValueError(f"{source}: unknown drift class {', '.join(map(repr, unknown))}; use any of: {', '.join(DRIFT_CLASSES)}")
    return frozenset(names)
