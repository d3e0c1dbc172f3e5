"""What a session's replays saved: the tokens, API time and money the recorded calls cost when they were made."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Mapping

from .pricing import PriceBook

if TYPE_CHECKING:
    from ..model.interaction import Key
    from ..stores.base import Store


class Savings:
    """Added up over every replay: tokens, seconds, dollars, and the models no price was found for. A plain class,
    a tally rather than a value (a dataclass costs every session's end ~2 M instructions to define)."""

    def __init__(self, tokens: int = 0, seconds: float = 0.0, cost: Decimal = Decimal(0), priced: int = 0, unpriced: Mapping[str, int] | None = None, database_missing: bool = False) -> None:
        self.tokens = tokens
        self.seconds = seconds
        self.cost = cost
        self.priced = priced
        self.unpriced: Counter[str] = Counter(unpriced or {})
        self.database_missing = database_missing

    def add(self, prices: PriceBook, count: int, model: str | None, url: str, usage: tuple[int | None, int | None], latency_ms: float | None) -> None:
        """A recording replayed ``count`` times: its tokens and latency, and its price for the tokens its answer
        reports (``url`` names the provider; "" prices by model name alone), or its model among the unpriced."""
        self.add_calls(prices, count, model, url, count * (usage[0] or 0), count * (usage[1] or 0), count * (latency_ms or 0.0))

    def add_calls(self, prices: PriceBook, calls: int, model: str | None, url: str, input_tokens: int, output_tokens: int, latency_ms: float) -> None:
        """``calls`` replays of recordings of one model and URL whose answers reported these tokens and latency in all
        (a price is linear in the tokens: a group is priced at once). Answers that report no tokens are billed nothing
        (embeddings without usage, files, errors): keep them out of a group that reports some, or they count as priced."""
        self.tokens += input_tokens + output_tokens
        self.seconds += latency_ms / 1000
        if not calls or (not input_tokens and not output_tokens):
            return
        price = prices.cost(model, url, input_tokens, output_tokens)
        self.database_missing = prices.database_missing
        if price is None:
            self.unpriced[model or url or "-"] += calls
        else:
            self.cost += price
            self.priced += calls

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

    A store that keeps usage in columns of its own (SQLite) adds it up itself, by model and URL, without the answers
    (fetching each recording instead cost ~0.2 ms apiece at the end of a 1,000-test session, parsing each request in
    Python ~8 µs). Others are asked for the replayed recordings at once (Redis: a round trip per 500, not per recording).
    """
    saved = Savings()
    replayed = {key: count for key, count in replays.items() if count}
    usage_by_model = getattr(cassette, "replayed_usage", None)
    if usage_by_model is not None:
        for model, url, calls, input_tokens, output_tokens, latency_ms in usage_by_model(replayed):
            saved.add_calls(prices, calls, model, url, input_tokens, output_tokens, latency_ms)
        return saved
    for recording in cassette.get_many(replayed):
        saved.add(prices, replayed[recording.key], recording.request.model, recording.request.url, recording.usage(), recording.latency_ms)
    return saved


def _dollars(amount: Decimal) -> str:
    if amount >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.4f}" if amount >= Decimal("0.0001") else "less than $0.0001"
