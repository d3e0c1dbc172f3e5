"""Property tests: canonicalize() and the scrubber never crash, and fingerprints are stable, on any input.

A crash in the fingerprint code would fail a user's test for a reason that has nothing to do with it.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llm_replay.model.fingerprint import (
    CanonicalRequest,
    canonicalize,
    differences,
    distance,
    respelled,
)
from llm_replay.model.credentials import SECRET_BODY_FIELDS, SECRET_QUERY_PARAMS
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber

EXAMPLES = 400  # per property; 5 properties
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_text = st.text(st.characters(codec=None), max_size=40)  # surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
urls = any_text | st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}/{path}?{query}",
    st.sampled_from(["http", "https", "", "ws"]),
    st.sampled_from(["api.openai.com", "API.OpenAI.com:443", "127.0.0.1:8080", "[::1]", "[::1", "user:pw@h", "h:99999", ""]),
    any_text,
    any_text,
)


@st.composite
def multipart(draw: st.DrawFn) -> tuple[bytes, str]:
    """A multipart body, well- or ill-formed, and the content type that announces its boundary."""
    boundary = draw(st.text("abcXYZ019-'_", min_size=0, max_size=12))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        head = draw(st.sampled_from([
            'Content-Disposition: form-data; name="model"',
            'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav',
            "Content-Disposition: form-data",
            "garbage without colon",
            "",
        ]))
        separator = draw(st.sampled_from(["\r\n\r\n", "\r\n", ""]))
        parts.append(f"--{boundary}\r\n{head}{separator}".encode() + draw(st.binary(max_size=20)) + b"\r\n")
    closing = draw(st.sampled_from([f"--{boundary}--\r\n".encode(), b""]))
    quote = draw(st.sampled_from(["", '"']))
    return b"".join(parts) + closing, f"multipart/form-data; boundary={quote}{boundary}{quote}"


bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    any_text,
    json_values.map(json.dumps),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.just(b'{"a": "\\ud800"}'),
)
content_types = any_text | st.sampled_from(["application/json", "text/plain; charset=utf-8", "multipart/form-data; boundary="])


@FUZZ
@given(method=any_text, url=urls, body=bodies, content_type=content_types)
def test_canonicalize_never_crashes_and_round_trips(method, url, body, content_type):
    request = canonicalize(method, url, body, content_type)
    assert len(request.fingerprint) == 32
    assert canonicalize(method, url, body, content_type).fingerprint == request.fingerprint, "same request, same key"
    stored = request.to_json()
    stored.encode("utf-8")  # what the cassette writes must be storable text
    rebuilt = CanonicalRequest.from_json(stored)  # through the dataclass's __init__, which canonicalize skips for speed
    assert rebuilt.fingerprint == request.fingerprint and set(vars(rebuilt)) == set(vars(request))


@FUZZ
@given(body_and_type=multipart(), url=urls)
def test_multipart_of_any_shape_never_crashes(body_and_type, url):
    body, content_type = body_and_type
    request = canonicalize("POST", url, body, content_type)
    assert CanonicalRequest.from_json(request.to_json()).fingerprint == request.fingerprint


@FUZZ
@given(first=st.tuples(any_text, urls, bodies), second=st.tuples(any_text, urls, bodies))
def test_differences_and_distance_never_crash(first, second):
    one, two = canonicalize(*first, "application/json"), canonicalize(*second, "application/json")
    assert distance(one, one) == 0 and differences(one, one) == []
    assert distance(one, two) >= 0
    # no difference exactly when the two spell the same values (0 and 0.0, a host's case and default port: respelled)
    assert (differences(one, two) == []) == (respelled(one).to_json() == respelled(two).to_json())


@FUZZ
@given(url=urls, body=bodies, secret=st.text("abcdefXYZ0123456789-_:/", min_size=8, max_size=20))
def test_scrubbing_never_crashes_removes_the_secret_and_is_stable(url, body, secret):
    scrubber = Scrubber(environ={"SOME_API_KEY": secret})
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    planted = canonicalize("POST", f"{url}/{secret}", (raw or b"") + secret.encode(), "text/plain")
    scrubbed = scrubber.request(planted)
    assert secret not in scrubbed.to_json() or secret in "<scrubbed:SOME_API_KEY>"
    assert scrubber.request(scrubbed).fingerprint == scrubbed.fingerprint


secret_names = st.sampled_from(sorted(SECRET_BODY_FIELDS)).map(lambda name: name.replace("_", "-") if len(name) % 2 else name.upper())
query_names = st.sampled_from(sorted(SECRET_QUERY_PARAMS))
header_names = st.builds(lambda middle, last: f"x-{middle}-{last}", st.text("abcdefghij", min_size=1, max_size=6), st.sampled_from(["token", "secret", "auth"]))
planted_secrets = st.text("abcdefXYZ0123456789-_.~", min_size=12, max_size=24)


@FUZZ
@given(secret=planted_secrets, field=secret_names, query=query_names, header=header_names, around=json_values,
       user=st.text("abcxyz", max_size=5), form_first=st.booleans())
def test_named_credentials_leave_no_trace_wherever_they_are_planted(secret, field, query, header, around, user, form_first):
    """No environment variable knows these values: the field, parameter and header names alone must catch them."""
    assume(secret not in json.dumps(around, ensure_ascii=False))  # the body around it is not itself the secret
    scrubber = Scrubber(environ={})
    json_body = json.dumps({"around": around, field: secret, "list": [{field: secret}]})
    form = f"{field}={secret}&other=1" if form_first else f"other=1&{field}={secret}"
    requests = [
        canonicalize("POST", f"https://{user}:{secret}@h.example/p?{query}={secret}&x=1", json_body, "application/json"),
        canonicalize("POST", "https://h.example/p", form, "application/x-www-form-urlencoded"),
    ]
    response = RecordedResponse(200, "OK", {header: [secret], "content-type": ["application/json"], "location": [f"wss://{user}:{secret}@h/"]},
                                (json_body + f'\ndata: {{"{field}" : "{secret}"}}').encode())
    for request in requests:
        stored = scrubber.interaction(Interaction.of(request, response))
        assert secret not in stored.request_json and secret.encode() not in stored.response.body, "planted secret survived"
        assert secret not in json.dumps(stored.response.headers)
        assert scrubber.interaction(stored) == stored, "scrubbing is stable"
        assert scrubber.request(stored.request).fingerprint == stored.request.fingerprint


credential_pieces = st.sampled_from(sorted(SECRET_BODY_FIELDS)).flatmap(  # snake, kebab, camel (accessToken), any case
    lambda name: st.builds(lambda upper, separator: "".join(c.upper() if up else c for c, up in zip(name, upper)).replace("_", separator),
                           st.lists(st.booleans(), min_size=len(name), max_size=len(name)), st.sampled_from(["_", "-", ""]))
)
hint_texts = st.lists(
    credential_pieces | any_text | st.sampled_from(["://", ":", "@", "/", " ", "_api", "-KEY", "x_api_key", "\u017f", "\u212a", "\u0130"]),
    max_size=8,
).map("".join)


@FUZZ
@given(text=hint_texts)
def test_the_fast_look_for_credential_names_answers_as_the_regex_does(text):
    # Every request's replay asks this first; it must never skip a request the rules would scrub (it may look at one
    # they would not: a separator inside a word, "pass_word").
    from llm_replay.model.scrub import _might_name_a_secret, name_rules

    if name_rules().hint.search(text) is not None:
        assert _might_name_a_secret(text)


@FUZZ
@given(value=json_values)
def test_the_canonical_text_is_what_json_dumps_gives_with_the_canonical_options(value):
    # The canonical text is made by one C encoder kept for every request (no circular-reference check): it must give
    # the fingerprints json.dumps gave (NaN, infinities and lone surrogates included), or every recording stops matching.
    from llm_replay.model.fingerprint import _canonical_json

    assert _canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


json_space = st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0x"), max_size=3)  # JSON's four, two that are not, and not space


@FUZZ
@given(value=json_values, before=json_space, after=json_space, indent=st.none() | st.integers(0, 2), broken=st.binary(max_size=3))
def test_a_request_bodys_json_loads_as_json_loads_loads_it(value, before, after, indent, broken):
    # A request's body is parsed by the C scanner without json.loads' Python steps: the value (or the refusal) must be
    # json.loads' own, whatever surrounds the document, or fingerprints change and every recording stops matching.
    from llm_replay.model.fingerprint import _loaded_json

    document = json.dumps(value, indent=indent, ensure_ascii=indent == 1)
    for raw in ((before + document + after).encode("utf-8", "surrogatepass"), document.encode("utf-16", "surrogatepass"), document.encode("utf-8", "surrogatepass") + broken):
        try:
            expected = ("value", json.dumps(json.loads(raw), sort_keys=True))
        except ValueError as error:
            expected = ("refused", type(error).__name__)
        try:
            got = ("value", json.dumps(_loaded_json(raw), sort_keys=True))
        except ValueError as error:
            got = ("refused", type(error).__name__)
        assert got[0] == expected[0] and (got[0] == "refused" or got == expected), (raw, got, expected)
