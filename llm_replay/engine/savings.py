"""What a session's replays saved: the tokens, API time and money the recorded calls cost when they were made."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Mapping

from ..model.fingerprint import CanonicalRequest
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

    def add(self, prices: PriceBook, count: int, model: str | None, url: str, usage: tuple[int | None, int | None], latency_ms: float | None) -> None:
        """A recording replayed ``count`` times: its tokens and latency, and its price for the tokens its answer
        reports (``url`` names the provider; "" prices by model name alone), or its model among the unpriced."""
        input_tokens, output_tokens = usage[0] or 0, usage[1] or 0
        self.tokens += count * (input_tokens + output_tokens)
        self.seconds += count * (latency_ms or 0.0) / 1000
        if not count or (not input_tokens and not output_tokens):
            return  # nothing billed that the answer reports (embeddings without usage, files, errors)
        price = prices.cost(model, url, input_tokens, output_tokens)
        self.database_missing = prices.database_missing
        if price is None:
            self.unpriced[model or url or "-"] += count
        else:
            self.cost += count * price
            self.priced += count

    def text(self) -> str:
        """``1,234 tokens, 3.2 s of API time, about $0.0012 (no price for house-model: set ini llm_prices)``."""
        parts = [f"{self.tokens:,} tokens", f"{self.seconds:,.1f} s of API time"]
        if self.priced:
            parts.append(f"{'about ' if self.cost >= Decimal('0.0001') else ''}{_dollars(self.cost)}")
        text = ", ".join(parts)
        if self.unpriced:
            models = ", ".join(sorted(self.unpriced))
            why = "install genai-prices (pip install genai-prices) or set" if self.database_missing else "set"
            text += f" (no price for {models}: {why} ini llm_prices)"
        return text

    def line(self) -> str:
        """The session's line: ``llm_replay: replays saved …`` (``text``)."""
        return "llm_replay: replays saved " + self.text()


def replay_savings(cassette: "Store", replays: Mapping["Key", int], prices: PriceBook) -> Savings:
    """What the recordings replayed ``replays[key]`` times each cost when recorded (their usage and latency).

    A store that keeps usage in columns of its own (SQLite) gives the replayed recordings' rows without the answers
    (fetching each recording instead cost ~0.2 ms apiece at the end of a 1,000-test session). Others are asked for
    the replayed recordings at once (Redis: a round trip per 500, not per recording).
    """
    saved = Savings()
    summaries = getattr(cassette, "summaries", None)
    if summaries is not None:
        for row in summaries(keys=(key for key, count in replays.items() if count)):
            request = CanonicalRequest.from_stored(row.request_json)
            saved.add(prices, replays[row.fingerprint, row.occurrence], request.model, request.url, (row.input_tokens, row.output_tokens), row.latency_ms)
        return saved
    for recording in cassette.get_many(key for key, count in replays.items() if count):
        saved.add(prices, replays[recording.key], recording.request.model, recording.request.url, recording.usage(), recording.latency_ms)
    return saved


def _dollars(amount: Decimal) -> str:
    if amount >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.4f}" if amount >= Decimal("0.0001") else "less than $0.0001"
