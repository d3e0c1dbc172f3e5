"""LangChain cache keys as canonical requests: readable fields, but never two keys on one recording."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llm_replay.engine.langchain_keys import langchain_request
from llm_replay.model.credentials import is_secret_field
from llm_replay.model.scrub import PATTERN_PLACEHOLDER

CHAT_LLM_STRING = (
    '{"id": ["langchain", "chat_models", "openai", "ChatOpenAI"], "kwargs": {"model_name": "gpt-4o-mini", '
    '"openai_api_key": {"id": ["OPENAI_API_KEY"], "lc": 1, "type": "secret"}, "temperature": 0.2}, "lc": 1, '
    '"name": "ChatOpenAI", "type": "constructor"}---[(\'stop\', None)]'
)
CHAT_PROMPT = '[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"], "kwargs": {"content": "hi", "type": "human"}}]'


def test_chat_key_is_stored_as_fields():
    body = langchain_request(CHAT_PROMPT, CHAT_LLM_STRING).body
    assert body["llm_string"]["serialized"]["kwargs"]["temperature"] == 0.2
    assert body["llm_string"]["params"] == {"stop": None}
    assert body["prompt"][0]["kwargs"]["content"] == "hi"
    assert body["model"] == "gpt-4o-mini"


def test_llm_params_are_fields_and_credentials_are_scrubbed():
    request = langchain_request("Tell me a joke", "[('api_key', 'sk-live-123456'), ('model_name', 'm'), ('n', 2)]")
    assert request.body["llm_string"] == {"params": {"api_key": PATTERN_PLACEHOLDER, "model_name": "m", "n": 2}}
    assert "sk-live" not in request.to_json()
    other_key = langchain_request("Tell me a joke", "[('api_key', 'sk-other-654321'), ('model_name', 'm'), ('n', 2)]")
    assert other_key.fingerprint == request.fingerprint, "the same recording whoever's key recorded it"


def test_text_that_does_not_render_back_exactly_stays_text():
    spaced, tight = langchain_request("[1, 2]", "[('n', 1)]"), langchain_request("[1,2]", "[('n', 1)]")
    assert spaced.body["prompt"] == [1, 2] and tight.body["prompt"] == "[1,2]"
    assert spaced.fingerprint != tight.fingerprint
    as_tuple, as_list = langchain_request("p", "[('stop', ('a',))]"), langchain_request("p", "[('stop', ['a'])]")
    assert as_tuple.body["llm_string"] == "[('stop', ('a',))]" and as_list.body["llm_string"] == {"params": {"stop": ["a"]}}
    assert as_tuple.fingerprint != as_list.fingerprint
    assert langchain_request("p", "[('model', <object at 0x1>)]").body["llm_string"] == "[('model', <object at 0x1>)]"


params = st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8), max_size=4)


@given(st.text(max_size=30), params, st.text(max_size=30), params)
def test_different_keys_never_share_a_fingerprint(prompt_a, params_a, prompt_b, params_b):
    llm_a, llm_b = str(sorted(params_a.items())), str(sorted(params_b.items()))
    same = langchain_request(prompt_a, llm_a).fingerprint == langchain_request(prompt_b, llm_b).fingerprint
    secret_only = {k: v for k, v in params_a.items() if not is_secret_field(k)} == {k: v for k, v in params_b.items() if not is_secret_field(k)}
    assert same == ((prompt_a, llm_a) == (prompt_b, llm_b)) or (same and secret_only and prompt_a == prompt_b)


def _chat_llm_string(kwargs: str, params: str = "[('stop', None)]") -> str:
    return '{"id": ["langchain", "chat_models", "openai", "ChatOpenAI"], "kwargs": {' + kwargs + '}, "lc": 1, "name": "ChatOpenAI", "type": "constructor"}---' + params


GATEWAY = '"default_headers": {"X-Gateway-Token": "%s"}, "default_query": {"api-version": "v1", "sig": "%s"}, "extra_body": {"inner": {"token": "%s"}}'


def test_headers_secret_query_parameters_and_nested_secret_fields_never_key_a_recording():
    first = langchain_request("hi", _chat_llm_string(GATEWAY % ("gw-one-123456", "sig-one-123456", "tok-one-123456")))
    second = langchain_request("hi", _chat_llm_string(GATEWAY % ("gw-two-654321", "sig-two-654321", "tok-two-654321")))
    assert "one-123456" not in first.to_json() and first.fingerprint == second.fingerprint
    kwargs = first.body["llm_string"]["serialized"]["kwargs"]
    assert kwargs["default_query"] == {"api-version": "v1", "sig": PATTERN_PLACEHOLDER}, "a setting that is no credential stays"
    changed = langchain_request("hi", _chat_llm_string(GATEWAY.replace('"v1"', '"v2"') % ("gw-one-123456", "sig-one-123456", "tok-one-123456")))
    assert changed.fingerprint != first.fingerprint


def test_a_chat_llm_string_whose_parameters_stay_text_is_scrubbed_and_otherwise_kept_exactly():
    structured = "[('response_format', <class 'app.City'>), ('stop', None)]"  # with_structured_output(City)
    scrubbed = langchain_request("hi", _chat_llm_string(GATEWAY % ("gw-one-123456", "sig-one-123456", "tok-one-123456"), structured))
    assert isinstance(scrubbed.body["llm_string"], str) and "one-123456" not in scrubbed.to_json()
    assert scrubbed.body["llm_string"].endswith("---" + structured)
    plain = _chat_llm_string('"model_name": "gpt-4o-mini"', structured)
    assert langchain_request("hi", plain).body["llm_string"] == plain, "keys recorded before keep matching"
    dashes = _chat_llm_string('"model_name": "m---x"', "[('stop', ['---'])]")
    assert langchain_request("hi", dashes).body["llm_string"]["params"] == {"stop": ["---"]}
