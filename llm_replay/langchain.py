"""The public home of the LangChain caches: ``from llm_replay.langchain import InMemoryCache, SQLiteCache``.

The code lives in ``llm_replay.layers.langchain`` (the layer that catches LangChain's cache lookups).
"""

from .layers.langchain import (
    InMemoryCache,
    LangChainNotVerified,
    RecorderCache,
    SQLiteCache,
    installed_as_llm_cache,
)

__all__ = ["InMemoryCache", "SQLiteCache", "RecorderCache", "LangChainNotVerified", "installed_as_llm_cache"]
