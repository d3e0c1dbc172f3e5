"""What a call would have cost: genai-prices' maintained database, overridden by the ini's ``llm_prices`` lines.

genai-prices is optional and imported on first use (it costs about 0.2 s); without it, and for a model
neither it nor the ini knows, the price is unknown and said to be, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def of(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The cost of one call."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / _MTOK


def parse_prices(lines: Iterable[str], source: str) -> dict[str, Price]:
    """``model: input_per_mtok output_per_mtok`` lines (ini ``llm_prices``) as prices by model name."""
    prices = {}
    for line in lines:
        if not line.strip() or line.strip().startswith("#"):
            continue
        model, colon, numbers = line.rpartition(":")
        try:
            if not colon or not model.strip():
                raise ValueError
            input_price, output_price = (Decimal(number) for number in numbers.replace(",", " ").split())
        except (ValueError, InvalidOperation):
            raise ValueError(
                f"{source}: cannot read {line.strip()!r}; write one model a line as 'MODEL: INPUT OUTPUT' "
                "(US dollars per million tokens), e.g. 'gpt-4o-mini: 0.15 0.60'"
            ) from None
        prices[model.strip()] = Price(input_price, output_price)
    return prices


class PriceBook:
    """Prices by model: the ini's first, then genai-prices (matched by model name and the API's URL)."""

    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self.overrides = overrides or {}
        self.database_missing = False

    def cost(self, model: str | None, url: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """The cost of one call in US dollars, or None when no price is known for ``model``."""
        if not model:
            return None
        if model in self.overrides:
            return self.overrides[model].of(input_tokens, output_tokens)
        try:
            from genai_prices import Usage, calc_price
        except ImportError:
            self.database_missing = True
            return None
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        # The URL names the provider; a local or proxied one does not, so the model name alone decides then.
        for provider_api_url in (url, None):
            try:
                return Decimal(calc_price(usage, model, provider_api_url=provider_api_url).total_price)
            except (LookupError, ValueError):
                continue
        return None
