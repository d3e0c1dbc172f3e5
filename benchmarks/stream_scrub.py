"""What scrubbing one recorded answer costs (the cassette's ``put`` does it once per recording), in µs:

    python benchmarks/stream_scrub.py [--events N]

a JSON answer's scrub; then a chat stream of N events (default 300, ~76 kB) taken apart: the byte scrub every body
gets (secret values, names, URL passwords), the quick look that decides without parsing whether a secret could be
split over its events (``may_be_split`` for the values, ``may_spell_a_name`` for a secret-named field or a URL
password), and the join (parse, join each field's pieces, look, rewrite) that a stream gets when the look says so, or
whenever an ini ``llm_secret_patterns`` is set (a pattern can match anything): the same stream with a key streamed
three characters per event, and with no secret but a pattern. Then a tool call's arguments streamed over N events (JSON
text, so its escaped quotes make the look for names search for every secret field name): the look, and the join when a
secret-named argument is in it. Two secret variables are set, as in a shell with an OpenAI and an Anthropic key; the
best of several repeats is shown (a shared machine's load only ever adds).
"""

from __future__ import annotations

import argparse
import json
import timeit

from llm_replay.model.interaction import RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.model.streamed_text import StreamedBody, may_be_split, may_spell_a_name

ENVIRON = {
    "OPENAI_API_KEY": "sk-" + "proj-Qm7vR2kLp9XwZ4tYb8NcJ3hF6gD1sA5eT3BlbkFJu0iK7oP2lM9nB4vC6xZ8",  # fake, split so scanners pass
    "ANTHROPIC_API_KEY": "sk-" + "ant-api03-Zx9Kq2Lm7Pv4Rt8Wn3Bc6Hj1Df5Gs0Ay2Eu7Io4Kp9Ml3Nb6Vc8Xz1Qw5Er7Ty2Ui4Op6As8Df0Gh3Jk5Lz7Xc9Vb1NmAA",
}
WORDS = "The quick brown fox jumps over the lazy dog while the printer on floor three jams again,".split(" ")


def stream(events: int, secret: str = "") -> bytes:
    """An OpenAI chat stream of ``events`` chunks, a word each; ``secret`` streamed three characters per chunk in the middle."""
    pieces = [WORDS[index % len(WORDS)] + " " for index in range(events)]
    if secret:
        pieces[events // 2 : events // 2] = [secret[at : at + 3] for at in range(0, len(secret), 3)]
    return chunked([{"content": piece} for piece in pieces])


def tool_call(events: int, name: str = "note") -> bytes:
    """An OpenAI chat stream of a tool call's arguments, ``{"<name>": "<words>"}`` in ``events`` pieces."""
    arguments = json.dumps({name: " ".join(WORDS[index % len(WORDS)] for index in range(events))})
    size = -(-len(arguments) // events)
    return chunked([{"tool_calls": [{"index": 0, "function": {"arguments": arguments[at : at + size]}}]} for at in range(0, len(arguments), size)])


def chunked(deltas: list[dict]) -> bytes:
    """The SSE body of an OpenAI chat stream of ``deltas``, one a chunk."""
    chunks = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "system_fingerprint": "fp_1",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}], "obfuscation": "aB3dE"}
              for delta in deltas]
    return b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"


def best_us(call, number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="stream_scrub.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="events in the streamed answer (default 300)")
    args = parser.parse_args()

    plain, patterned = Scrubber(environ=ENVIRON), Scrubber(environ=ENVIRON, patterns=[r"corp-[0-9a-f]{16}"])
    answer = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "Ticket 17: printer jam, floor 3. " * 20}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}}).encode()
    json_response = RecordedResponse(200, "OK", {"content-type": ["application/json"]}, answer)
    print(f"JSON answer, {len(answer) / 1000:.1f} kB: {best_us(lambda: plain.response(json_response), 2000):.1f} µs a scrub")

    clean, split = stream(args.events), stream(args.events, ENVIRON["ANTHROPIC_API_KEY"])
    secrets = plain.env_secrets()
    values = [value for value, _ in secrets]
    byte_scrub = best_us(lambda: plain._body(clean, secrets), 20)
    look = best_us(lambda: may_be_split(clean, values) or may_spell_a_name(clean), 20)
    print(f"{args.events}-event chat stream, {len(clean) / 1000:.0f} kB: the byte scrub {byte_scrub:.0f} µs; "
          f"the quick look {look:.0f} µs (+{look / byte_scrub:.0%}), all a stream with no secret split pays")
    assert not may_be_split(clean, values) and may_be_split(split, values) and not may_spell_a_name(clean)
    for name, scrubber, body in (("a key split over its events", plain, split), ("no secret, an ini pattern", patterned, clean)):
        join = best_us(lambda: scrubber._unsplit(StreamedBody.of(body), secrets), 20)
        print(f"  the join, {name}: {join:.0f} µs (+{join / byte_scrub:.0%})")

    arguments, named = tool_call(args.events), tool_call(args.events, "api_key")
    byte_scrub = best_us(lambda: plain._body(arguments, secrets), 20)
    look = best_us(lambda: may_be_split(arguments, values) or may_spell_a_name(arguments), 20)
    ruled_out = "all arguments with no secret-named field pay" if not may_spell_a_name(arguments) else "which cannot rule these out (a piece ends 'p', the next starts 'ri': private_key?)"
    print(f"a tool call's arguments in {args.events} events, {len(arguments) / 1000:.0f} kB: the byte scrub {byte_scrub:.0f} µs; "
          f"the quick look {look:.0f} µs (+{look / byte_scrub:.0%}), {ruled_out}")
    assert may_spell_a_name(named)
    join = best_us(lambda: plain._unsplit(StreamedBody.of(named), secrets), 20)
    print(f"  the join, a secret-named argument: {join:.0f} µs (+{join / byte_scrub:.0%})")


if __name__ == "__main__":
    main()
