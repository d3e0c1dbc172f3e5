"""The support bot's tests. They call OpenAI through llm_cache: recorded once, replayed offline in CI."""

from __future__ import annotations

import support_bot

TICKET = "I was charged twice for my March invoice and need a refund for the duplicate payment."
ARTICLES = ["How refunds work", "Resetting your password", "Changing your plan"]


def test_summary_is_one_line(llm_cache):
    summary = support_bot.summarize(TICKET)
    assert summary and "\n" not in summary
    assert llm_cache.replayed + llm_cache.recorded == 1


def test_streamed_reply_arrives_in_pieces(llm_cache):
    pieces = list(support_bot.stream_reply(TICKET))
    assert len(pieces) > 1
    assert "".join(pieces).strip()


def test_closest_article_is_one_of_ours(llm_cache):
    assert support_bot.closest_article("I want my money back", ARTICLES) in ARTICLES


def test_same_question_twice_is_answered_once(llm_cache):
    assert support_bot.summarize(TICKET) == support_bot.summarize(TICKET)
    assert len(llm_cache.interactions) == 2
    assert llm_cache.interactions[0].key == llm_cache.interactions[1].key
