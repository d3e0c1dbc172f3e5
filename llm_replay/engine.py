"""Turning a Recorder on: HTTP interception plus placeholder API keys while replaying."""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, MutableMapping

from .settings import Mode, parse_mode, session_mode

if TYPE_CHECKING:  # imported where used: merely loading the pytest plugin must stay cheap
    from .recorder import Recorder

# SDKs refuse to construct a client without these; a replay never sends them anywhere.
PLACEHOLDER_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "CO_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
)
PLACEHOLDER_KEY = "llm-replay-placeholder-key"


@contextmanager
def placeholder_keys(environ: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """Give unset SDK key variables a placeholder for the block, and unset them again after."""
    added = [name for name in PLACEHOLDER_KEY_VARIABLES if not environ.get(name)]
    for name in added:
        environ[name] = PLACEHOLDER_KEY
    try:
        yield
    finally:
        for name in added:
            if environ.get(name) == PLACEHOLDER_KEY:
                del environ[name]


@contextmanager
def activated(recorder: Recorder) -> Iterator[Recorder]:
    """Intercept HTTP through ``recorder`` for the block (``off`` intercepts nothing)."""
    if recorder.mode is Mode.OFF:
        yield recorder
        return
    from .interception import intercepting

    with ExitStack() as stack:
        if recorder.mode is Mode.REPLAY:
            stack.enter_context(placeholder_keys())
        stack.enter_context(intercepting(recorder))
        yield recorder


@contextmanager
def use_cassette(path: str | os.PathLike[str] | None, mode: str | Mode | None = None, *, repeats: str = "cache") -> Iterator[Recorder]:
    """Record and replay outside pytest (scripts, notebooks) with the same engine.

    ``path=None`` keeps recordings in memory for the block. ``mode`` defaults as in pytest:
    env ``LLM_REPLAY_MODE``, else ``replay`` when ``CI`` is set, else ``record``.
    """
    from .cassettes import InMemoryCache, SQLiteCache
    from .recorder import Recorder

    chosen = parse_mode(mode, "use_cassette(mode=...)") if mode is not None else session_mode(None, None)[0]
    cassette = InMemoryCache() if path is None else SQLiteCache(Path(path), readonly=chosen is Mode.REPLAY)
    try:
        hint = f"run the same code with mode='record' (or LLM_REPLAY_MODE=record) and an API key; it records into {cassette.describe()}"
        with activated(Recorder(cassette, chosen, repeats=repeats, record_hint=lambda: hint)) as recorder:
            yield recorder
    finally:
        cassette.close()
