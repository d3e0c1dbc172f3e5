"""llm_replay: record LLM calls once, replay them deterministically in tests."""

from .engine.settings import Mode
from .errors import CassetteError, CassetteMiss, NetworkBlocked, RecordingExpired
from .layers.activation import use_cassette

__all__ = ["CanonicalRequest", "CassetteError", "CassetteMiss", "Mode", "NetworkBlocked", "RecordingExpired", "use_cassette"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # CanonicalRequest (for before_fingerprint hooks) loads on first use, like the rest of the engine.
    if name == "CanonicalRequest":
        from .model.fingerprint import CanonicalRequest

        return CanonicalRequest
    raise AttributeError(f"module 'llm_replay' has no attribute {name!r}")
