"""What a call would have cost: genai-prices' maintained database, overridden by the ini's ``llm_prices`` lines.

genai-prices is optional and imported on first use (it costs about 0.2 s); without it, and for a model
neither it nor the ini knows, the price is unknown and said to be, never guessed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Iterable

_MTOK = Decimal(1_000_000)


class Price:  # a plain class: a NamedTuple costs the plugin's import ~0.5 M instructions, a frozen dataclass more
    """US dollars per million input and output tokens."""

    __slots__ = ("input_per_mtok", "output_per_mtok")

    def __init__(self, input_per_mtok: Decimal, output_per_mtok: Decimal) -> None:
        self.input_per_mtok, self.output_per_mtok = input_per_mtok, output_per_mtok

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
    """Prices by model: the ini's first, then genai-prices (matched by model name and the API's URL).

    genai-prices is asked once per model and URL, for the rate of a thousand input and a thousand output
    tokens; calls are priced at that rate (tiers for very long prompts are not applied: an estimate).
    """

    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self.overrides = overrides or {}
        self.database_missing = False
        self._rates: dict[tuple[str, str], Price | None] = {}

    def cost(self, model: str | None, url: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        """The cost of one call in US dollars, or None when no price is known for ``model``."""
        if not model:
            return None
        price = self.overrides.get(model) or self._rate(model, url)
        return price.of(input_tokens, output_tokens) if price is not None else None

    def _rate(self, model: str, url: str) -> Price | None:
        if (model, url) not in self._rates:
            self._rates[(model, url)] = self._database_rate(model, url)
        return self._rates[(model, url)]

    def _database_rate(self, model: str, url: str) -> Price | None:
        try:
            from genai_prices import Usage, calc_price
        except ImportError:
            self.database_missing = True
            return None
        # The URL names the provider; a local or proxied one does not, so the model name alone decides then.
        for provider_api_url in (url or None, None):
            try:
                per_input = calc_price(Usage(input_tokens=1000, output_tokens=0), model, provider_api_url=provider_api_url).total_price
                per_output = calc_price(Usage(input_tokens=0, output_tokens=1000), model, provider_api_url=provider_api_url).total_price
            except (LookupError, ValueError):
                continue
            return Price(Decimal(per_input) * 1000, Decimal(per_output) * 1000)
        return None
