"""A strict miss's traceback cut down to the test's and the application's own frames.

pytest renders every frame of a failure with its source, parsing each file it passes through:
for a miss raised under the openai SDK, httpx and vcrpy that is ~0.1 s per failing test, and
minutes when a changed prompt or model makes a whole suite miss. The miss message already says
what was asked and what to run; the frames worth reading are the user's.
"""

from __future__ import annotations

from pathlib import PurePath
from types import TracebackType

_INSTALLED = frozenset({"site-packages", "dist-packages"})


def without_installed_packages(tb: TracebackType | None) -> TracebackType | None:
    """The same traceback minus frames of installed packages; unchanged when nothing else is left."""
    kept = []
    entry = tb
    while entry is not None:
        if _INSTALLED.isdisjoint(PurePath(entry.tb_frame.f_code.co_filename).parts):
            kept.append(entry)
        entry = entry.tb_next
    if not kept:
        return tb
    trimmed = None
    for entry in reversed(kept):
        trimmed = TracebackType(trimmed, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return trimmed
