"""The LangChain layer alone when one model request answers several cache lookups: an LLM's ``generate([a, b])`` sends
its missing prompts in one completions request, and a 400 to it fails them all. The replay, offline, must fail the same
way (not miss the first prompt). Real ``langchain_openai.OpenAI`` over loopback HTTP to the fake; in process."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from langchain_openai import OpenAI

from llm_replay.engine.recorder import Recorder
from llm_replay.engine.settings import Mode
from llm_replay.layers.activation import activated
from llm_replay.stores.sqlite import SQLiteCache


@pytest.fixture(autouse=True)
def _langchain_global_cache_restored():
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


@pytest.fixture
def llm(server) -> OpenAI:
    return OpenAI(model="gpt-3.5-turbo-instruct", base_url=server.base_url, api_key=server.api_key, max_retries=0)


def _generate(llm: OpenAI, cassette, mode: Mode, prompts: list[str], *, asynchronously: bool = False) -> tuple[str, Recorder]:
    """``llm.generate(prompts)`` (or ``agenerate``) under the LangChain layer alone: its answers' texts, or the error it
    raised; and the recorder, for its counts."""
    store = SQLiteCache(cassette)
    recorder = Recorder(store, mode, test_id="test_app.py::test_batch")
    try:
        with activated(recorder, layers=("langchain",)):
            result = asyncio.run(llm.agenerate(prompts)) if asynchronously else llm.generate(prompts)
        outcome = " | ".join(generations[0].text for generations in result.generations)
    except openai.APIStatusError as error:
        outcome = f"{type(error).__name__} {error.status_code} {error.body}"
    finally:
        store.close()
    return outcome, recorder


@pytest.mark.parametrize("asynchronously", [False, True], ids=["generate", "agenerate"])
def test_a_batch_refused_live_is_refused_offline(server, llm, tmp_path, asynchronously):
    """The 400 is the answer to every prompt of the batch; one recorded before (``b``, a hit amid the lookups) is
    not part of the request and keeps its answer."""
    cassette = tmp_path / "batch.sqlite3"
    earlier, _ = _generate(llm, cassette, Mode.RECORD, ["b"])
    server.fail_next(400, message="prompt refused for test")
    live, recorded = _generate(llm, cassette, Mode.RECORD, ["a", "b", "c"], asynchronously=asynchronously)
    assert live.startswith("BadRequestError 400") and "prompt refused for test" in live, live
    assert server.requests[-1]["json"]["prompt"] == ["a", "c"]
    assert (recorded.recorded, recorded.replayed, recorded.unrecorded) == (2, 1, 0)

    server.stop()
    replayed, replayer = _generate(llm, cassette, Mode.REPLAY, ["a", "b", "c"], asynchronously=asynchronously)
    assert replayed == live
    assert (replayer.missed, replayer.replayed) == (0, 3)
    assert _generate(llm, cassette, Mode.REPLAY, ["b"])[0] == earlier


def test_a_batch_with_a_new_prompt_beside_a_recorded_refusal_asks_the_provider(server, llm, tmp_path):
    """``b``'s recorded 400 answered a request for ``b`` alone; ``generate([a, b])`` sends another request, so it goes
    to the provider (record mode), whose answer becomes ``a``'s entry too, and the replay gives it offline."""
    cassette = tmp_path / "batch.sqlite3"
    server.fail_next(400, message="b refused for test")
    _generate(llm, cassette, Mode.RECORD, ["b"])
    asked = len(server.requests)
    server.fail_next(400, message="a and b refused for test")
    live, recorded = _generate(llm, cassette, Mode.RECORD, ["a", "b"])
    assert len(server.requests) == asked + 1 and "a and b refused for test" in live, live
    assert recorded.recorded == 1

    server.stop()
    replayed, replayer = _generate(llm, cassette, Mode.REPLAY, ["a", "b"])
    assert replayer.missed == 0 and replayed == live


def test_a_batch_sent_in_parts_is_kept_as_its_entries_and_a_refused_part_fails_it_offline(server, tmp_path):
    """With ``batch_size=1`` the LLM sends one request per prompt, one after another: the second request is the batch's
    too (it was recorded at the HTTP layer, which no replay asks), and a 400 to it fails the whole ``generate``, live and
    replayed (the replay missed ``a``)."""
    sent = []

    def refuse_the_second(request: httpx.Request) -> None:
        sent.append(request)
        if len(sent) == 4:  # the second request of the second generate
            server.fail_next(400, message="second part refused for test")

    client = httpx.Client(event_hooks={"request": [refuse_the_second]})
    llm = OpenAI(model="gpt-3.5-turbo-instruct", base_url=server.base_url, api_key=server.api_key, max_retries=0, batch_size=1, http_client=client)
    answered = tmp_path / "answered.sqlite3"
    live, recorded = _generate(llm, answered, Mode.RECORD, ["a", "b"])
    assert len(sent) == 2 and recorded.recorded == 2 and live.endswith("b #2"), live
    store = SQLiteCache(answered)
    assert [interaction.request.host for interaction in store.interactions()] == ["langchain://"] * 2
    store.close()

    refused = tmp_path / "refused.sqlite3"
    live, recorded = _generate(llm, refused, Mode.RECORD, ["a", "b"])
    assert len(sent) == 4 and "second part refused for test" in live, live
    assert (recorded.recorded, recorded.unrecorded) == (2, 0)

    server.stop()
    assert _generate(llm, answered, Mode.REPLAY, ["a", "b"])[0].endswith("b #2")
    replayed, replayer = _generate(llm, refused, Mode.REPLAY, ["a", "b"])
    assert replayer.missed == 0 and replayed == live
