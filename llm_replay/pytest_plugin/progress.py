"""Live calls while recording, as they finish: a long record run should not be silent."""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from ..engine.recorder import Recorder
    from ..model.fingerprint import CanonicalRequest

_LOCK = threading.Lock()  # one line at a time from the threads a test starts


def show_live_call(config: pytest.Config, slow_s: float, recorder: Recorder, request: CanonicalRequest, status: int, latency_s: float) -> None:
    """Prints ``llm_replay: live <test> POST api.openai.com/v1/chat/completions gpt-4o 2.3 s`` for a live call with
    ``-v``, or without it for a call slower than ``slow_s``, past pytest's output capture."""
    if config.getoption("verbose") <= 0 and latency_s < slow_s:
        return
    reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
    capture: Any = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    answer = "" if status == 200 else f" (status {status})"
    line = f"llm_replay: live {recorder.test_id or '-'} {request.endpoint} {request.model or '-'} {latency_s:.1f} s{answer}"
    with _LOCK, capture.global_and_fixture_disabled() if capture else nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)
