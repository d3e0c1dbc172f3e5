"""How old a recording is, and the ``30d`` / ``12h`` / ``90s`` spelling of ages in settings and messages."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ..model.interaction import Interaction

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_age(value: str | int | float | timedelta, source: str) -> float:
    """An age in seconds: ``30d``, ``12h``, ``90s`` (also ``m``inutes, ``w``eeks), a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _AGE.match(str(value))
        if match is None:
            raise ValueError(f"{source}: {value!r} is not an age; write a number and a unit, e.g. 30d, 12h, 90s (units: s, m, h, d, w)")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"{source}: an age must be more than zero, not {value!r}")
    return seconds


def age_text(seconds: float) -> str:
    """``41d``, ``3h``, ``90s``: the largest unit that keeps a whole number of at least 1."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit]:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{int(seconds)}s"


def age_of(interaction: Interaction, now: datetime | None = None) -> float | None:
    """Seconds since the recording was made, or None when it carries no time (an import without a Date header).

    ``now`` defaults to the real time: llm_replay's own modules are never frozen by the test's clock.
    """
    if not interaction.recorded_at:
        return None
    try:
        recorded = datetime.fromisoformat(interaction.recorded_at)
    except ValueError:
        return None
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - recorded).total_seconds()

