"""Placeholder API keys while replaying, so SDK clients construct on a machine that has no key."""

from __future__ import annotations

import os
import threading
from typing import MutableMapping

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
    # boto3 signs with these (SigV4); the signature never reaches a cassette nor a fingerprint
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
PLACEHOLDER_KEY = "llm-replay-placeholder-key"
_RAW_NAMES = tuple(map(os.fsencode, PLACEHOLDER_KEY_VARIABLES))  # as os.environ keeps them


_HOLDERS: dict[int, tuple[int, tuple[str, ...]]] = {}  # id(environ) -> (activations holding it, names it added)
_NO_HOLDERS: tuple[int, tuple[str, ...]] = (0, ())
_LOCK = threading.Lock()


class placeholder_keys:  # lower case like contextlib.suppress: used as ``with placeholder_keys():``
    """Give unset SDK key variables a placeholder for the block, and unset them again after the last block
    holding them ends (replays in several threads share the process's environment).

    A class, not a generator: it is entered and left as every replaying test starts and ends."""

    def __init__(self, environ: MutableMapping[str, str] = os.environ) -> None:
        self.environ = environ

    def __enter__(self) -> None:
        environ = self.environ
        with _LOCK:
            holders, added = _HOLDERS.get(id(environ), _NO_HOLDERS)
            # every entry fills what is unset now: code that ran since the first entry (a test's monkeypatch, a nested
            # pytester session) may have removed a placeholder the outer block put there. os.environ's raw dict answers
            # without decoding each value (this runs as every replaying test starts).
            raw = getattr(environ, "_data", None)
            if raw is not None and all(map(raw.get, _RAW_NAMES)):
                _HOLDERS[id(environ)] = (holders + 1, added)  # all set (a replay session holds them): one more holder
                return
            missing = [name for name in PLACEHOLDER_KEY_VARIABLES if not environ.get(name)]
            for name in missing:
                environ[name] = PLACEHOLDER_KEY
            _HOLDERS[id(environ)] = (holders + 1, added + tuple(name for name in missing if name not in added))

    def __exit__(self, *exc_info: object) -> None:
        environ = self.environ
        with _LOCK:
            holders, added = _HOLDERS.pop(id(environ))
            if holders > 1:
                _HOLDERS[id(environ)] = (holders - 1, added)
            else:
                for name in added:
                    if environ.get(name) == PLACEHOLDER_KEY:
                        del environ[name]
