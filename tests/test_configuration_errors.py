"""Every bad configuration value stops pytest with an error that names where it came from (the ini key, the marker on
its test, the llm_cache_config fixture), the value and what is accepted; never a bare TypeError nor an INTERNALERROR."""

from __future__ import annotations

import pytest
from conftest import write_ini

from llm_replay.engine.settings import CacheSettings

OPTIONS = "adopt_body_paths, allow_hosts, before_fingerprint, before_record, fail_unplayed, freeze_time, ignore_hosts, layer, match_ignore, max_age, mode, on_expired, repeats, scope"
HOSTS = "['api.example.com', '*.internal:8080'] (or one host as a string)"
PATHS = "['metadata.request_id', 'messages[*].name'] (or one path as a string)"


def _output(result: pytest.RunResult) -> str:
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    "ini, message",
    [
        ("llm_freeze_time = maybe", "ERROR: ini option llm_freeze_time: invalid truth value 'maybe'; write true or false"),
        ("llm_autouse = maybe", "ERROR: ini option llm_autouse: invalid truth value 'maybe'; write true or false"),
        ("llm_fail_unplayed = maybe", "ERROR: ini option llm_fail_unplayed: invalid truth value 'maybe'; write true or false"),
        ("llm_scope = bogus", "ERROR: scope in ini option llm_scope must be one of test, suite, not 'bogus'"),
        ("llm_repeats = bogus", "ERROR: repeats in ini option llm_repeats must be one of cache, sequence, not 'bogus'"),
        ("llm_on_expired = nag", "ERROR: on_expired in ini option llm_on_expired must be one of warn, fail, refresh, not 'nag'"),
        (
            "llm_allow_hosts = 10.0.0.0/33",
            "ERROR: allow_hosts entry '10.0.0.0/33' in ini option llm_allow_hosts: not a network (*); write an address and a "
            "prefix length, e.g. 10.0.0.0/8 or fd00::/8",
        ),
        (
            "llm_allow_hosts = db.internal:5432",
            "ERROR: allow_hosts entry 'db.internal:5432' in ini option llm_allow_hosts: the guard allows a host on every port; "
            "write the host alone ('db.internal')",
        ),
        (
            "llm_allow_hosts = [fd00::5]:8080",
            "ERROR: allow_hosts entry '[[]fd00::5]:8080' in ini option llm_allow_hosts: *; write the host alone ('fd00::5')",
        ),
        (
            "llm_ignore_hosts = https://user@vectors.test:6333/v1",
            "ERROR: ignore_hosts entry 'https://user@vectors.test:6333/v1' in ini option llm_ignore_hosts: write a host name, "
            "not a URL (e.g. 'vectors.test')",
        ),
        (
            "llm_ignore_hosts = 10.0.0.0/8",
            "ERROR: ignore_hosts entry '10.0.0.0/8' in ini option llm_ignore_hosts: a network does not match here; write names "
            "or globs, e.g. '10.0.0.*' or '*.internal:8080'",
        ),
        (
            "llm_adopt_body_paths = a..b",
            "ERROR: bad adopt_body_paths path 'a..b' in ini option llm_adopt_body_paths: expected dotted JSON body fields*",
        ),
    ],
)
def test_a_bad_ini_value_names_its_key_and_what_it_takes(llm_pytester, ini, message):
    write_ini(llm_pytester, ini + "\n")
    llm_pytester.makepyfile(test_x="def test_x(llm_cache):\n    pass\n")
    result = llm_pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    _output(result)


def test_a_bad_marker_value_names_the_option_the_marker_and_the_test(llm_pytester):
    llm_pytester.makepyfile(test_m='''
import pytest

@pytest.mark.llm_cache()
def test_no_options(llm_cache):
    pass

@pytest.mark.llm_cache("test")
def test_positional(llm_cache):
    pass

@pytest.mark.llm_cache("refresh", "sequence")
def test_two_positional():
    pass

@pytest.mark.llm_cache(5)
def test_positional_not_a_choice():
    pass

@pytest.mark.llm_cache(match_ignore=5)
def test_match_ignore_int():
    pass

@pytest.mark.llm_cache(allow_hosts=5)
def test_allow_hosts_int():
    pass

@pytest.mark.llm_cache(ignore_hosts=[5])
def test_ignore_hosts_int_entry():
    pass

@pytest.mark.llm_cache(adopt_body_paths="a..b")
def test_adopt_body_paths_bad():
    pass

@pytest.mark.llm_cache(scope="module")
def test_scope_bad():
    pass

@pytest.mark.llm_cache(layer=5)
def test_layer_int():
    pass

@pytest.mark.llm_cache(before_fingerprint="mine")
def test_before_fingerprint_not_a_function():
    pass

@pytest.mark.llm_cache(freeze_time="maybe")
def test_freeze_time_bad():
    pass

@pytest.mark.llm_cache("test")
class TestMarkedClass:
    def test_in_class(self):
        pass
''')
    result = llm_pytester.runpytest()
    result.assert_outcomes(passed=1, errors=12)  # the marker with no options is fine, and caches no error away
    text = _output(result)
    for message in [
        f"@pytest.mark.llm_cache on test_m.py::test_positional takes keyword arguments only, not the positional argument 'test' "
        f"(did you mean scope='test'?); its options: {OPTIONS}",
        f"@pytest.mark.llm_cache on test_m.py::test_two_positional takes keyword arguments only, not the positional arguments "
        f"'refresh', 'sequence' (did you mean mode='refresh', repeats='sequence'?); its options: {OPTIONS}",
        f"@pytest.mark.llm_cache on test_m.py::test_positional_not_a_choice takes keyword arguments only, not the positional "
        f"argument 5; its options: {OPTIONS}",
        f"@pytest.mark.llm_cache on test_m.py::TestMarkedClass::test_in_class takes keyword arguments only, not the positional "
        f"argument 'test' (did you mean scope='test'?); its options: {OPTIONS}",
        f"match_ignore in @pytest.mark.llm_cache on test_m.py::test_match_ignore_int must be a list of JSON body paths, e.g. {PATHS}, not 5",
        f"allow_hosts in @pytest.mark.llm_cache on test_m.py::test_allow_hosts_int must be a list of hosts, e.g. {HOSTS}, not 5",
        f"ignore_hosts in @pytest.mark.llm_cache on test_m.py::test_ignore_hosts_int_entry must be a list of hosts, e.g. {HOSTS}, not [5]",
        "bad adopt_body_paths path 'a..b' in @pytest.mark.llm_cache on test_m.py::test_adopt_body_paths_bad: expected dotted JSON body fields",
        "scope in @pytest.mark.llm_cache on test_m.py::test_scope_bad must be one of test, suite, not 'module'",
        "layer in @pytest.mark.llm_cache on test_m.py::test_layer_int: expected 'http', 'langchain', 'http,langchain' or a list of them, not 5",
        "before_fingerprint in @pytest.mark.llm_cache on test_m.py::test_before_fingerprint_not_a_function must be a function taking "
        "and returning a CanonicalRequest, not 'mine'",
        "freeze_time in @pytest.mark.llm_cache on test_m.py::test_freeze_time_bad must be true or false, not 'maybe'",
    ]:
        assert f"pytest.UsageError: {message}" in text
    assert "TypeError" not in text


def test_a_bad_llm_cache_config_names_the_fixture(llm_pytester):
    for folder, returned in [("forgot_return", "None"), ("pairs", "[('scope', 'test')]"), ("hosts", "{'allow_hosts': 5}"), ("scope", "{'scope': 'bogus'}")]:
        llm_pytester.mkpydir(folder)
        body = f"    {returned}\n" if folder == "forgot_return" else f"    return {returned}\n"
        (llm_pytester.path / folder / "test_it.py").write_text(
            f"import pytest\n\n@pytest.fixture\ndef llm_cache_config():\n{body}\n\ndef test_it(llm_cache):\n    pass\n"
        )
    result = llm_pytester.runpytest()
    result.assert_outcomes(errors=4)
    text = _output(result)
    for message in [
        "the llm_cache_config fixture must give a dict of llm_cache options, e.g. {'scope': 'test'}, not None",
        "the llm_cache_config fixture must give a dict of llm_cache options, e.g. {'scope': 'test'}, not [('scope', 'test')]",
        f"allow_hosts in the llm_cache_config fixture must be a list of hosts, e.g. {HOSTS}, not 5",
        "scope in the llm_cache_config fixture must be one of test, suite, not 'bogus'",
    ]:
        assert f"pytest.UsageError: {message}" in text


def test_one_string_where_a_list_is_taken_is_its_one_entry():
    settings = CacheSettings().updated(
        {"allow_hosts": "api.test", "ignore_hosts": "vectors.test:6333", "match_ignore": "metadata.id", "adopt_body_paths": "model"}, "a marker"
    )
    assert (settings.allow_hosts, settings.ignore_hosts) == (("api.test",), ("vectors.test:6333",))
    assert (settings.match_ignore, settings.adopt_body_paths) == (("metadata.id",), ("model",))
    widened = settings.updated({"allow_hosts": ["b.test", "api.test"], "ignore_hosts": None}, "a marker")
    assert (widened.allow_hosts, widened.ignore_hosts) == (("api.test", "b.test"), ("vectors.test:6333",))


def test_an_empty_cassette_option_stops_rather_than_falling_back_to_the_default(llm_pytester):
    # `pytest --llm-cassette=$CASSETTE` with the variable unset recorded into cassettes/llm_cache.sqlite3 unannounced
    llm_pytester.makepyfile(test_x="def test_x(llm_cache):\n    pass\n")
    result = llm_pytester.runpytest("--llm-cassette=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --llm-cassette is empty: give a file or a redis:// URL, or leave the option out*"])
    _output(result)
    assert not (llm_pytester.path / "cassettes").exists()
