"""What a session's replays saved: the tokens, API time and money the recorded calls cost when they were made."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Mapping

from .pricing import PriceBook

if TYPE_CHECKING:
    from ..model.interaction import Key
    from ..stores.base import Store


@dataclass
class Savings:
    """Added up over every replay: tokens, seconds, dollars, and the models no price was found for."""

    tokens: int = 0
    seconds: float = 0.0
    cost: Decimal = Decimal(0)
    priced: int = 0
    unpriced: Counter[str] = field(default_factory=Counter)
    database_missing: bool = False

    def line(self) -> str:
        """``llm_replay: replays saved 1,234 tokens, 3.2 s of API time, about $0.0012``, and what is unpriced."""
        parts = [f"{self.tokens:,} tokens", f"{self.seconds:,.1f} s of API time"]
        if self.priced:
            parts.append(f"{'about ' if self.cost >= Decimal('0.0001') else ''}{_dollars(self.cost)}")
        line = "llm_replay: replays saved " + ", ".join(parts)
        if self.unpriced:
            models = ", ".join(sorted(self.unpriced))
            why = "install genai-prices (pip install 'llm_replay[prices]') or set" if self.database_missing else "set"
            line += f" (no price for {models}: {why} ini llm_prices)"
        return line


def replay_savings(cassette: "Store", replays: Mapping["Key", int], prices: PriceBook) -> Savings:
    """What the recordings replayed ``replays[key]`` times each cost when recorded (their usage and latency)."""
    saved = Savings()
    for key, count in replays.items():
        recording = cassette.get(*key) if count else None
        if recording is None:
            continue
        input_tokens, output_tokens = recording.usage()
        input_tokens, output_tokens = input_tokens or 0, output_tokens or 0
        saved.tokens += count * (input_tokens + output_tokens)
        saved.seconds += count * (recording.latency_ms or 0.0) / 1000
        if not input_tokens and not output_tokens:
            continue  # nothing billed that the answer reports (embeddings without usage, files, errors)
        request = recording.request
        cost = prices.cost(request.model, request.url, input_tokens, output_tokens)
        if cost is None:
            saved.unpriced[request.model or f"{request.method} {request.url}"] += count
        else:
            saved.cost += count * cost
            saved.priced += count
    saved.database_missing = prices.database_missing
    return saved


def _dollars(amount: Decimal) -> str:
    if amount >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.4f}" if amount >= Decimal("0.0001") else "less than $0.0001"
