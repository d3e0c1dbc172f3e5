"""llm_replay: record LLM calls once, replay them deterministically in tests."""

from .engine.settings import Mode
from .errors import CassetteError, CassetteMiss, NetworkBlocked, RecordingExpired

__all__ = ["CanonicalRequest", "CassetteError", "CassetteMiss", "Mode", "NetworkBlocked", "RecordingExpired", "Scrubber", "use_cassette"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Public names that load on first use, like the rest of the engine (the pytest plugin imports this package, and
    # a session whose tests never use llm_cache loads none of them): use_cassette, CanonicalRequest (for
    # before_fingerprint hooks) and Scrubber (for use_cassette(..., scrubber=...)).
    if name == "use_cassette":
        from .layers.activation import use_cassette

        return use_cassette
    if name == "CanonicalRequest":
        from .model.fingerprint import CanonicalRequest

        return CanonicalRequest
    if name == "Scrubber":
        from .model.scrub import Scrubber

        return Scrubber
    raise AttributeError(f"module 'llm_replay' has no attribute {name!r}")
