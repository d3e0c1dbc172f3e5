"""Live calls while recording, as they finish: a long record run should not be silent."""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..engine.recorder import Recorder
    from ..model.fingerprint import CanonicalRequest

SLOW_CALL_S = 5.0  # a call this slow is shown even without -v (ini llm_slow_call)


class LiveCallProgress:
    """Prints ``llm_replay: live <test> POST api.openai.com/v1/chat/completions gpt-4o 2.3 s`` for each live
    call with ``-v``, and for any call slower than ``slow_s`` without it, past pytest's output capture."""

    def __init__(self, config: pytest.Config, slow_s: float = SLOW_CALL_S) -> None:
        self._config = config
        self._verbose = config.getoption("verbose") > 0
        self._slow_s = slow_s
        self._lock = threading.Lock()

    def __call__(self, recorder: "Recorder", request: "CanonicalRequest", status: int, latency_s: float) -> None:
        if not self._verbose and latency_s < self._slow_s:
            return
        reporter: Any = self._config.pluginmanager.get_plugin("terminalreporter")
        capture: Any = self._config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        answer = "" if status == 200 else f" (status {status})"
        line = f"llm_replay: live {recorder.test_id or '-'} {request.endpoint} {request.model or '-'} {latency_s:.1f} s{answer}"
        with self._lock, capture.global_and_fixture_disabled() if capture else nullcontext():
            reporter.ensure_newline()
            reporter.write_line(line)
