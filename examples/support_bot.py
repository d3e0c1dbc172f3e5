"""A small support assistant: the kind of LLM code llm_replay is for.

It talks to OpenAI through the official SDK with default settings (api.openai.com, key from
OPENAI_API_KEY); nothing in it knows about tests.
"""

from __future__ import annotations

import math
from typing import Iterable

import openai

MODEL = "gpt-4o-mini"


def _client() -> openai.OpenAI:
    return openai.OpenAI()


def summarize(ticket: str) -> str:
    """A one-line summary of a support ticket for the queue view."""
    answer = _client().chat.completions.create(
        model=MODEL,
        temperature=0,
        messages=[
            {"role": "system", "content": "Summarize the support ticket in one line."},
            {"role": "user", "content": ticket},
        ],
    )
    return answer.choices[0].message.content.strip()


def stream_reply(ticket: str) -> Iterable[str]:
    """A reply to the customer, streamed as it is written."""
    stream = _client().chat.completions.create(
        model=MODEL,
        stream=True,
        messages=[
            {"role": "system", "content": "Write a short, kind reply to this customer."},
            {"role": "user", "content": ticket},
        ],
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def closest_article(question: str, articles: list[str]) -> str:
    """The help-centre article most similar to the question, by embedding cosine similarity."""
    vectors = _client().embeddings.create(model="text-embedding-3-small", input=[question, *articles]).data
    query, *candidates = (item.embedding for item in vectors)
    scores = [_cosine(query, candidate) for candidate in candidates]
    return articles[scores.index(max(scores))]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
