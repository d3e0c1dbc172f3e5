"""Every major SDK as users meet it: a pytest session records through the real SDK to a loopback fake of its
API, the next replays with the fake stopped and no key (CI), and a prompt never recorded fails strictly."""

from __future__ import annotations

import contextlib
import importlib
import io
import sqlite3

import pytest
from conftest import cassette_file, printed

from llm_replay.cli import main

# Each app's last test asks something never recorded, when the replaying session sets ASK_UNRECORDED.
UNRECORDED = '''

@pytest.mark.skipif(not os.environ.get("ASK_UNRECORDED"), reason="only in the replaying session")
def test_unrecorded(llm_cache):
    {ask}
'''

ANTHROPIC_APP = '''
import json, os
import anthropic
import pytest

BASE_URL = "{base_url}"
MODEL = "claude-sonnet-4-5"
TOOLS = [{{"name": "weather", "description": "The weather in a city", "input_schema": {{"type": "object", "properties": {{"city": {{"type": "string"}}}}}}}}]


def client():
    return anthropic.Anthropic(base_url=BASE_URL, max_retries=0)


def user(text):
    return [{{"role": "user", "content": text}}]


def test_messages(llm_cache):
    answer = client().messages.create(model=MODEL, max_tokens=64, system="Be brief.", messages=user("What is the capital of France?"))
    print("ANSWER", answer.model_dump_json())


def test_tools(llm_cache):
    first = client().messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=user("Weather in Paris?"))
    call = first.content[0]
    assert call.type == "tool_use"
    result = {{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}}
    history = user("Weather in Paris?") + [{{"role": "assistant", "content": [call.model_dump(exclude_none=True)]}}, {{"role": "user", "content": [result]}}]
    final = client().messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=history)
    print("ANSWER", first.model_dump_json(), final.model_dump_json())


def test_stream(llm_cache):
    with client().messages.stream(model=MODEL, max_tokens=64, messages=user("Count to three")) as stream:
        print("ANSWER", [event.type for event in stream], stream.get_final_message().model_dump_json())


def test_beta(llm_cache):
    answer = client().beta.messages.create(model=MODEL, max_tokens=64, messages=user("Beta hello"))
    print("ANSWER", answer.model_dump_json())


@pytest.mark.asyncio
async def test_async_create_and_stream(llm_cache):
    aclient = anthropic.AsyncAnthropic(base_url=BASE_URL, max_retries=0)
    answer = await aclient.messages.create(model=MODEL, max_tokens=64, messages=user("Async hello"))
    async with aclient.messages.stream(model=MODEL, max_tokens=64, messages=user("Async stream")) as stream:
        final = await stream.get_final_message()
    print("ANSWER", answer.model_dump_json(), final.model_dump_json())
''' + UNRECORDED.format(ask='client().messages.create(model=MODEL, max_tokens=64, messages=user("What is the capital of Spain?"))')

GEMINI_APP = '''
import json, os
import httpx
import pytest
from google import genai
from google.genai import types

BASE_URL = "{base_url}"
MODEL = "gemini-2.5-flash"


def client():
    # kept: a Client closes its HTTP client when it is garbage-collected, even mid-call
    global CLIENT
    CLIENT = genai.Client(http_options=types.HttpOptions(base_url=BASE_URL))
    return CLIENT


def test_generate_content(llm_cache):
    answer = client().models.generate_content(model=MODEL, contents="What is the capital of France?")
    print("ANSWER", answer.text, answer.usage_metadata.total_token_count)


def test_generate_content_stream(llm_cache):
    chunks = list(client().models.generate_content_stream(model=MODEL, contents="Count to three"))
    print("ANSWER", [chunk.text for chunk in chunks], chunks[-1].candidates[0].finish_reason)


@pytest.mark.asyncio
async def test_async_generate_and_stream(llm_cache):
    aio = client().aio
    answer = await aio.models.generate_content(model=MODEL, contents="Async hello")
    chunks = [chunk.text async for chunk in await aio.models.generate_content_stream(model=MODEL, contents="Async stream")]
    print("ANSWER", answer.text, chunks)


def test_key_in_the_query(llm_cache):
    url = f"{{BASE_URL}}/v1beta/models/{{MODEL}}:generateContent?key={{os.environ['GOOGLE_API_KEY']}}"
    answer = httpx.post(url, json={{"contents": [{{"role": "user", "parts": [{{"text": "Key in the query"}}]}}]}})
    assert answer.status_code == 200, answer.text
    print("ANSWER", answer.json()["candidates"][0]["content"]["parts"][0]["text"])
''' + UNRECORDED.format(ask='client().models.generate_content(model=MODEL, contents="What is the capital of Spain?")')

BEDROCK_APP = '''
import json, os
import boto3
import pytest

BASE_URL = "{base_url}"
MODEL = "us.amazon.nova-micro-v1:0"


def client():
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=BASE_URL)


def user(text):
    return [{{"role": "user", "content": [{{"text": text}}]}}]


def test_converse(llm_cache):
    answer = client().converse(modelId=MODEL, messages=user("What is the capital of France?"), inferenceConfig={{"maxTokens": 64}})
    print("ANSWER", json.dumps(answer["output"]), answer["stopReason"], answer["usage"])


def test_converse_stream(llm_cache):
    events = list(client().converse_stream(modelId=MODEL, messages=user("Count to three"))["stream"])
    print("ANSWER", json.dumps(events))
''' + UNRECORDED.format(ask='client().converse(modelId=MODEL, messages=user("What is the capital of Spain?"))')

LITELLM_APP = '''
import os
import litellm
import pytest

OPENAI_URL = "{openai_url}"
ANTHROPIC_URL = "{anthropic_url}"


def user(text):
    return [{{"role": "user", "content": text}}]


def test_routed_to_openai(llm_cache):
    answer = litellm.completion(model="openai/gpt-4o-mini", messages=user("What is the capital of France?"), api_base=OPENAI_URL)
    streamed = litellm.completion(model="openai/gpt-4o-mini", messages=user("Count to three"), api_base=OPENAI_URL, stream=True)
    print("ANSWER", answer.choices[0].message.content, "".join(chunk.choices[0].delta.content or "" for chunk in streamed))


def test_routed_to_anthropic(llm_cache):
    answer = litellm.completion(model="anthropic/claude-sonnet-4-5", messages=user("What is the capital of Italy?"), api_base=ANTHROPIC_URL, max_tokens=64)
    print("ANSWER", answer.choices[0].message.content, answer.usage.prompt_tokens)


@pytest.mark.asyncio
async def test_async_routed_to_anthropic_and_streamed(llm_cache):
    streamed = await litellm.acompletion(model="anthropic/claude-sonnet-4-5", messages=user("Count to three"), api_base=ANTHROPIC_URL, max_tokens=64, stream=True)
    print("ANSWER", "".join([chunk.choices[0].delta.content or "" async for chunk in streamed]))
''' + UNRECORDED.format(ask='litellm.completion(model="anthropic/claude-sonnet-4-5", messages=user("What is the capital of Spain?"), api_base=ANTHROPIC_URL, max_tokens=64)')

AGENT_APP = '''
import os
import pytest
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

BASE_URL = "{base_url}"


def agent():
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=BASE_URL, api_key=os.environ["OPENAI_API_KEY"]))
    built = Agent(model, system_prompt="Look things up before answering.")

    @built.tool_plain
    def lookup(q: str) -> str:
        """Search the knowledge base."""
        print("TOOL", q)
        return f"found: {{q}}"

    return built


def test_tool_using_agent(llm_cache):
    result = agent().run_sync("What is the capital of France?")
    print("ANSWER", result.output, [part.part_kind for message in result.all_messages() for part in message.parts])
''' + UNRECORDED.format(ask='agent().run_sync("What is the capital of Spain?")')


def _listed(pytester: pytest.Pytester, *command: str) -> str:
    """What ``llm-replay COMMAND`` prints about the inner session's cassette."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([command[0], "--cassette", str(cassette_file(pytester)), *command[1:]]) == 0
    return out.getvalue()


def _record_replay_miss(pytester: pytest.Pytester, env: pytest.MonkeyPatch, fakes: list, keys: dict[str, str], passed: int, sdk: str) -> pytest.RunResult:
    """Record with the keys set, replay on CI with the fakes stopped and no keys, then one unrecorded prompt."""
    # Imported out here, once: pytester's in-process sessions would each import the SDK again (seconds each).
    importlib.import_module(sdk)
    for name, value in keys.items():
        env.setenv(name, value)
    recorded = pytester.runpytest("-s", "--llm-mode=record")
    recorded.assert_outcomes(passed=passed, skipped=1)
    answers = printed(recorded, "ANSWER")
    assert len(answers) == passed and all("#" in answer or "echo" in answer for answer in answers), answers
    served = sum(len(fake.requests) for fake in fakes)
    recorded.stdout.fnmatch_lines([f"llm_replay: * {served} recorded, 0 missed in {passed} test* (mode record, *)"])

    for fake in fakes:
        fake.stop()
    for name in keys:
        env.delenv(name)
    env.setenv("CI", "true")
    env.setenv("ASK_UNRECORDED", "1")
    replayed = pytester.runpytest("-s")
    replayed.assert_outcomes(passed=passed, failed=1)
    assert printed(replayed, "ANSWER") == answers, "every SDK gets back byte for byte what it got when recording"
    replayed.stdout.fnmatch_lines([
        "*CassetteMiss: no recording for this request (mode 'replay': the network is not used)",
        "*What is the capital of Spain?*",
        f"llm_replay: * 0 recorded, 1 missed in {passed + 1} test* (mode replay, *)",
    ])
    assert sum(len(fake.requests) for fake in fakes) == served, "nothing reached a fake while replaying"
    return replayed


def test_anthropic_messages_tools_streaming_beta_sync_and_async(llm_pytester, anthropic_server, env):
    llm_pytester.makepyfile(test_app=ANTHROPIC_APP.format(base_url=anthropic_server.base_url))
    replayed = _record_replay_miss(llm_pytester, env, [anthropic_server], {"ANTHROPIC_API_KEY": anthropic_server.api_key}, passed=5, sdk="anthropic")
    replayed.stdout.fnmatch_lines(["*model:     claude-sonnet-4-5", "*prompt:    (user) What is the capital of Spain?"])
    assert any(request.query.get("beta") == "true" or request.path == "/v1/messages" for request in anthropic_server.requests)


def test_gemini_generate_content_and_sse_stream_key_in_header_or_query(llm_pytester, gemini_server, env):
    llm_pytester.makepyfile(test_app=GEMINI_APP.format(base_url=gemini_server.base_url))
    replayed = _record_replay_miss(llm_pytester, env, [gemini_server], {"GOOGLE_API_KEY": gemini_server.api_key}, passed=4, sdk="google.genai")
    # the model comes from the URL path, the prompt from Gemini's contents
    replayed.stdout.fnmatch_lines(["*model:     gemini-2.5-flash", "*prompt:    (user) What is the capital of Spain?"])
    assert {request.query.get("alt") for request in gemini_server.requests} >= {"sse", None}
    assert any("key" in request.query for request in gemini_server.requests), "one request sent its key in the query"
    assert gemini_server.api_key.encode() not in cassette_file(llm_pytester).read_bytes()
    # listings: the model from the path, the prompt from contents, the tokens from usageMetadata (JSON and each SSE stream)
    assert "models:            gemini-2.5-flash 5" in _listed(llm_pytester, "stats")
    assert "tokens recorded:   35 in, 25 out (5 of 5 recordings report usage)" in _listed(llm_pytester, "stats")
    rows = [row for row in _listed(llm_pytester, "ls").splitlines() if " POST " in row]
    assert len(rows) == 5 and all(" gemini-2.5-flash " in row and "(user) " in row for row in rows), rows


def test_bedrock_converse_and_event_stream_without_sigv4_in_the_cassette(llm_pytester, bedrock_server, env, tmp_path):
    llm_pytester.makepyfile(test_app=BEDROCK_APP.format(base_url=bedrock_server.base_url))
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):  # no profile of the machine's takes part
        env.setenv(name, str(tmp_path / "absent"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session_token = "FwoGZXIvYXdzEXAMPLEsessionTOKEN"
    keys = {"AWS_ACCESS_KEY_ID": bedrock_server.api_key, "AWS_SECRET_ACCESS_KEY": bedrock_server.secret_key, "AWS_SESSION_TOKEN": session_token}
    replayed = _record_replay_miss(llm_pytester, env, [bedrock_server], keys, passed=2, sdk="boto3")
    replayed.stdout.fnmatch_lines(["*model:     us.amazon.nova-micro-v1:0", "*prompt:    (user) What is the capital of Spain?"])
    assert all(request.headers["x-amz-security-token"] == session_token for request in bedrock_server.requests), "the recording run signed"
    stored = cassette_file(llm_pytester).read_bytes()
    for secret in (bedrock_server.api_key, bedrock_server.secret_key, session_token, "AWS4-HMAC-SHA256", "X-Amz-Date"):
        assert secret.encode() not in stored, secret
    with sqlite3.connect(cassette_file(llm_pytester)) as db:
        paths = sorted(row[0] for row in db.execute("SELECT json_extract(request, '$.path') FROM interactions"))
    assert paths == ["/model/us.amazon.nova-micro-v1%3A0/converse", "/model/us.amazon.nova-micro-v1%3A0/converse-stream"]
    # listings: the model from the path, the tokens from the JSON usage and from the event stream's metadata event
    stats = _listed(llm_pytester, "stats")
    assert "models:            us.amazon.nova-micro-v1:0 2" in stats and "tokens recorded:   18 in, 10 out (2 of 2 recordings report usage)" in stats, stats
    key = next(row.split()[0] for row in _listed(llm_pytester, "ls").splitlines() if "converse-stream" in row)
    shown = _listed(llm_pytester, "show", key)
    assert "model:     us.amazon.nova-micro-v1:0" in shown and "Count to three" in shown, shown


def test_litellm_completion_routed_to_openai_and_to_anthropic_sync_async_and_streamed(llm_pytester, server, anthropic_server, env):
    llm_pytester.makepyfile(test_app=LITELLM_APP.format(openai_url=server.base_url, anthropic_url=anthropic_server.base_url))
    keys = {"OPENAI_API_KEY": server.api_key, "ANTHROPIC_API_KEY": anthropic_server.api_key}
    _record_replay_miss(llm_pytester, env, [server, anthropic_server], keys, passed=3, sdk="litellm")
    assert server.requests and anthropic_server.requests, "each route reached its own provider"


def test_pydantic_ai_agent_with_a_tool_records_then_replays_offline(llm_pytester, server, env):
    llm_pytester.makepyfile(test_app=AGENT_APP.format(base_url=server.base_url))
    replayed = _record_replay_miss(llm_pytester, env, [server], {"OPENAI_API_KEY": server.api_key}, passed=1, sdk="pydantic_ai")
    assert printed(replayed, "TOOL")[0] == "What is the capital of France?", "the replayed model still drove the tool"
    assert len(server.requests) == 2, "the agent asked twice: the tool call, then the answer"
