"""What a LangChain cache hit costs through ``ChatOpenAI.invoke``: llm_replay's caches beside LangChain's
``InMemoryCache`` (the anchor, ratio 1.0) and langchain-community's ``SQLiteCache``, with 10 and 10,000 entries.

Run: ``python benchmarks/langchain_hit.py``. The one live call (to learn the exact cache key) goes to the
loopback OpenAI-compatible server of tests/fake_openai.py; every timed call is a cache hit, no network.
``measure()`` returns the rows for benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SIZES = (10, 10_000)
CALLS = 300  # timed hits per round
ROUNDS = 7  # rounds alternate between caches, so a busy machine slows all of them alike
PROMPT = "What is the capital of France?"


def _warm_key() -> tuple[Callable[[Any], Any], str, str, list[Any]]:
    """A ChatOpenAI factory, and the (prompt, llm_string) key and generations one real call caches."""
    from fake_openai import FakeOpenAI
    from langchain_core.caches import InMemoryCache
    from langchain_openai import ChatOpenAI

    with FakeOpenAI() as server:
        def chat(cache: Any) -> Any:
            return ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key=server.api_key, cache=cache, max_retries=0)

        anchor = InMemoryCache()
        chat(anchor).invoke(PROMPT)
    ((prompt, llm_string), generations), = anchor._cache.items()
    return chat, prompt, llm_string, list(generations)


def _other_prompts(prompt: str, count: int) -> list[str]:
    return [prompt.replace(PROMPT, f"Question number {index}: what is {index} squared?") for index in range(count)]


def _filled(make: Callable[[], Any], prompt: str, llm_string: str, generations: list[Any], size: int, bulk: Callable | None = None) -> Any:
    cache = make()
    others = _other_prompts(prompt, size - 1)
    if bulk is not None:
        bulk(cache, others, llm_string, generations)
    else:
        for other in others:
            cache.update(other, llm_string, generations)
    cache.update(prompt, llm_string, generations)
    return cache


def _community_bulk(cache: Any, prompts: list[str], llm_string: str, generations: list[Any]) -> None:
    """langchain-community's own rows, inserted in one transaction (its update() commits one by one)."""
    from langchain_core.load import dumps
    from sqlalchemy.orm import Session

    with Session(cache.engine) as session, session.begin():
        session.add_all(
            cache.cache_schema(prompt=prompt, llm=llm_string, response=dumps(generation), idx=index)
            for prompt in prompts
            for index, generation in enumerate(generations)
        )


def _contenders(folder: Path) -> list[tuple[str, Callable[[], Any], Callable | None]]:
    from langchain_core.caches import InMemoryCache as LangChainInMemoryCache

    from llm_replay.langchain import InMemoryCache, SQLiteCache

    contenders: list[tuple[str, Callable[[], Any], Callable | None]] = [
        ("langchain_core InMemoryCache", LangChainInMemoryCache, None),
        ("llm_replay SQLiteCache", lambda: SQLiteCache(database_path=folder / f"llm_replay-{time.monotonic_ns()}.sqlite3"), None),
        ("llm_replay InMemoryCache", InMemoryCache, None),
    ]
    try:
        from langchain_community.cache import SQLiteCache as CommunitySQLiteCache
    except ImportError:
        print("langchain-community is not installed: its SQLiteCache row is left out", file=sys.stderr)
    else:
        contenders.append((
            "langchain_community SQLiteCache",
            lambda: CommunitySQLiteCache(database_path=str(folder / f"community-{time.monotonic_ns()}.db")),
            _community_bulk,
        ))
    return contenders


def _time_hits(model: Any, calls: int) -> list[float]:
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        model.invoke(PROMPT)
        timings.append(time.perf_counter() - started)
    return timings


def measure() -> list[dict[str, Any]]:
    """Median µs per cache hit through ChatOpenAI.invoke, and the ratio to LangChain's InMemoryCache."""
    chat, prompt, llm_string, generations = _warm_key()
    rows = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # langchain-community's deprecation notices, once per hit path
        contenders = _contenders(Path(folder))
        for size in SIZES:
            models = {name: chat(_filled(make, prompt, llm_string, generations, size, bulk)) for name, make, bulk in contenders}
            samples: dict[str, list[float]] = {name: [] for name in models}
            for name, model in models.items():
                _time_hits(model, 20)  # first hits parse and warm up; not timed
            gc.collect()
            for _ in range(ROUNDS):
                for name, model in models.items():
                    samples[name].extend(_time_hits(model, CALLS))
            anchor = statistics.median(samples["langchain_core InMemoryCache"])
            for name, timings in samples.items():
                median = statistics.median(timings)
                rows.append({"name": f"LangChain hit via ChatOpenAI.invoke, {name}, {size:,} entries", "median_us": round(median * 1e6, 1), "ratio": round(median / anchor, 2)})
            for model in models.values():
                close = getattr(model.cache, "close", None)
                if close is not None:
                    close()
    return rows


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # no options; --help says what it measures
    rows = measure()
    width = max(len(row["name"]) for row in rows)
    print(f"{'benchmark':<{width}}  {'median µs':>10}  {'ratio':>6}")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['median_us']:>10.1f}  {row['ratio']:>5.2f}x")


if __name__ == "__main__":
    main()
