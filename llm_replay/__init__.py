"""llm_replay: record LLM calls once, replay them deterministically in tests."""

from .engine import use_cassette
from .errors import CassetteError, CassetteMiss, NetworkBlocked
from .fingerprint import CanonicalRequest
from .settings import Mode

__all__ = ["CanonicalRequest", "CassetteError", "CassetteMiss", "Mode", "NetworkBlocked", "use_cassette"]
__version__ = "0.1.0"
