"""`llm-replay audit`: every key shape and secret env value found with file, entry and field; clean is 0."""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import random
import sqlite3
import string
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import cassette_file

from llm_replay.cli import main
from llm_replay.cli.audit import audit_for
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.model.scrub import Scrubber
from llm_replay.stores.sqlite import SQLiteCache

REPO = Path(__file__).parents[1]
REAL_CASSETTES = Path(os.environ.get("LLM_REPLAY_REAL_CASSETTES") or REPO.parent / "shared" / "real-cassettes")  # as test_import_real_cassettes
# Built by concatenation so this file itself never looks like it holds a key.
SHAPES = {
    "Anthropic API key": "sk-" + "ant-api03-" + "Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2",
    "OpenAI API key": "sk-" + "proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
    "Google API key": "AI" + "za" + "SyDk9Lm2Np4Qr6St8Uv0Wx1Yz3Ab5Cd7Ef9Gh"[:35],
    "AWS access key id": "AK" + "IAZ7Q3M9K2XW4B5N6V",
    "GitHub token": "gh" + "p_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "Slack token": "xo" + "xb-1234567890-abcdefghij",
    "bearer token": "Be" + "arer eyQ0mVt7ZyX2wPl8NaRb",
    "JWT": "ey" + "JhbGciOiJIUzI1NiJ9.ey" + "JzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}


def _cassette(path: Path, request_body: dict, response_headers: dict, response_body: bytes) -> Path:
    cassette = SQLiteCache(path, scrubber=Scrubber(environ={}))  # store as-is: the audit must find what slipped through
    request = canonicalize("POST", "https://api.openai.com/v1/chat/completions", json.dumps(request_body), "application/json")
    cassette.put(Interaction.of(request, RecordedResponse(200, "OK", response_headers, response_body), tests=("tests/test_app.py::test_leak",)))
    cassette.close()
    return path


def test_every_shape_is_reported_with_file_entry_and_field_masked(tmp_path, capsys, env):
    secret_env_value = "hunter2-but-longer"
    env.setenv("MY_DB_PASSWORD", secret_env_value)
    body = json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": f"{SHAPES['AWS access key id']} and {secret_env_value}"}}]})
    path = _cassette(
        tmp_path / "leaky.sqlite3",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{name}: {value}"} for name, value in SHAPES.items()]},
        {"x-debug": [SHAPES["OpenAI API key"]]},
        body.encode(),
    )
    assert main(["audit", str(path)]) == 1
    out = capsys.readouterr().out
    row = f"{path}: table interactions, row *#0, column"
    remedy = f"(remove: llm-replay scrub {path})"
    detect_secrets_names = {"Slack token": "Slack Token", "JWT": "JSON Web Token"}  # found by detect-secrets, named by it
    in_order = [name for name in SHAPES if name not in detect_secrets_names] + ["JWT", "Slack token"]  # ours first, then detect-secrets
    expected = [f"{row} request (JSON, keys included): {detect_secrets_names.get(name, name)} '*' {remedy}" for name in in_order]
    expected += [
        f"{row} headers (JSON, keys included): OpenAI API key 'sk-pro…*' {remedy}",
        f"{row} body (JSON, keys included): AWS access key id '*' {remedy}",
        f"{row} body (JSON, keys included): value of environment variable $MY_DB_PASSWORD 'hunt…ger' {remedy}",
        f"llm-replay audit: 11 secrets (scanned 1 files, 2 rows, * kB). Remove them with: llm-replay scrub {path} *rotate any real key*",
    ]
    pytest.LineMatcher(out.splitlines()).fnmatch_lines(expected, consecutive=False)
    assert not any(value in out for value in [*SHAPES.values(), secret_env_value]), "the report masks what it found"


def test_clean_cassettes_placeholders_and_stored_credential_headers(tmp_path, capsys, env):
    clean = _cassette(tmp_path / "clean.sqlite3", {"messages": [{"content": "Bearer <scrubbed:OPENAI_API_KEY>", "x": "sk-test-fake"}]}, {}, b"hello")
    assert main(["audit", str(clean)]) == 0
    assert "llm-replay audit: no secrets found (scanned 1 files, 2 rows" in capsys.readouterr().out

    with sqlite3.connect(clean) as db:  # a cassette written by a tool that bypassed the scrubber
        db.execute("""UPDATE interactions SET headers = '{"set-cookie": ["session=1"]}'""")
    assert main(["audit", str(clean)]) == 1
    assert ", column headers: credential header 'set-cookie' stored (remove: llm-replay scrub" in capsys.readouterr().out
    assert main(["scrub", str(clean)]) == 0 and main(["audit", str(clean)]) == 0, "scrub drops the stored credential header"


def test_text_exports_folders_user_patterns_and_errors(tmp_path, capsys, env):
    exports = tmp_path / "cassettes"
    (exports / "sub").mkdir(parents=True)
    (exports / "sub" / "old.yaml").write_text(f"interactions:\n- request:\n    headers:\n      Authorization: [{SHAPES['bearer token']}]\n")
    (exports / "langchain.yaml.gz").write_bytes(gzip.compress(b"ok\nid: corp-0123456789abcdef\n"))
    (exports / "notes.txt").write_text(SHAPES["OpenAI API key"])  # not a cassette file name: skipped in folders
    assert main(["audit", str(exports), "--secret-pattern", r"corp-[0-9a-f]{16}"]) == 1
    out = capsys.readouterr().out
    assert f"{exports / 'sub' / 'old.yaml'}: line 4: bearer token 'Bearer…" in out
    assert f"{exports / 'langchain.yaml.gz'}: line 2: match of secret pattern 'corp-[0-9a-f]{{16}}'" in out
    assert "notes.txt" not in out and "scanned 2 files, 0 rows" in out

    assert main(["audit", str(tmp_path / "missing.sqlite3")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    assert main(["audit", str(other)]) == 2
    assert "is an SQLite database but not an llm_replay cassette" in capsys.readouterr().err


def test_console_script_and_pre_commit_hook_run_the_audit(tmp_path, capsys, env, monkeypatch):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["llm-replay"] == "llm_replay.cli:main"
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "llm-replay-audit" and hook["entry"] == "llm-replay audit" and hook["pass_filenames"] is True
    clean = _cassette(tmp_path / "cassettes" / "llm_cache.sqlite3", {"messages": []}, {}, b"{}")
    assert main(["audit", str(clean)]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["audit"]) == 0, "with no PATH it scans ./cassettes"
    assert "scanned 1 files, 2 rows" in capsys.readouterr().out
    with pytest.raises(SystemExit) as unknown:
        main(["inspect"])
    assert unknown.value.code == 2


@pytest.mark.skipif(not REAL_CASSETTES.is_dir(), reason=f"real recorded traffic not present at {REAL_CASSETTES}")
def test_no_false_positive_on_real_recorded_traffic_yet_a_key_in_it_is_found(tmp_path, capsys, env):
    assert main(["audit", str(REAL_CASSETTES)]) == 0
    out = capsys.readouterr().out
    cassettes = [path for path in REAL_CASSETTES.rglob("*") if path.name.endswith((".yaml", ".yml", ".yaml.gz"))]
    assert len(cassettes) > 40
    assert f"no secrets found (scanned {len(cassettes)} files" in out, out

    sample = next(REAL_CASSETTES.glob("simonw__llm/*.yaml"))
    leaked = tmp_path / "cassettes" / sample.name
    leaked.parent.mkdir()
    leaked.write_text(sample.read_text().replace("interactions:", f"# {SHAPES['Anthropic API key']}\ninteractions:", 1))
    assert main(["audit", str(leaked)]) == 1
    assert f"{leaked}: line 1: Anthropic API key 'sk-ant…" in capsys.readouterr().out


def _key(place: str) -> str:
    """A distinct Anthropic-shaped key for each place, so a finding names which one it is."""
    return "sk-" + "ant-api03-" + hashlib.sha256(place.encode()).hexdigest()[:32] + f"W{PLACES.index(place):02d}Q"  # masked sk-ant…W07Q


PLACES = ("meta", "instants", "runs", "usage", "tests", "reason", "model", "jsonkey", "headername", "extratable", "freepage", "wal")


def test_secrets_planted_in_every_table_column_key_free_page_and_wal_are_found_and_scrub_removes_every_byte(tmp_path, capsys, env, monkeypatch):
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_secret_env = TENANT_CREDS\nllm_secret_patterns = corp-[0-9a-f]{16}\n")
    env.setenv("TENANT_CREDS", "tenant-credential-value-1")  # secret only by the project's ini
    monkeypatch.chdir(tmp_path)
    planted = {place: _key(place) for place in PLACES}
    extra = {"ini env": "tenant-credential-value-1", "ini pattern": "corp-0123456789abcdef",
             "google oauth": "ya29." + "a0AfB_byC1d2E3f4G5h6I7j8K9l0M1n2O3p4", "hugging face": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"}
    path = tmp_path / "cassettes" / "llm_cache.sqlite3"
    kept = _cassette(path, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, {}, b'{"ok": true}')
    untouched = SQLiteCache(kept, scrubber=Scrubber(environ={}))  # a clean recording beside the planted ones
    clean_request = canonicalize("POST", "https://api.openai.com/v1/embeddings", json.dumps({"input": "clean"}), "application/json")
    untouched.put(Interaction.of(clean_request, RecordedResponse(200, "OK", {"x-request-id": ["req_1"]}, b'{"data": []}'), tests=("t::clean",)))
    clean_before = untouched.get(clean_request.fingerprint)
    untouched.close()
    with sqlite3.connect(kept) as db:
        db.execute("INSERT INTO meta VALUES ('note', ?)", (planted["meta"],))
        db.execute("INSERT INTO test_instants VALUES (?, '2025-01-01T00:00:00+00:00', 0)", (f"tests/t.py::test[{planted['instants']}]",))
        # run bookkeeping tables, as cassettes written before it moved to pytest's cache dir have them
        db.execute("CREATE TABLE runs (uid TEXT PRIMARY KEY, finished_at TEXT NOT NULL, complete INTEGER NOT NULL, scope TEXT)")
        db.execute("CREATE TABLE usage (fingerprint TEXT, occurrence INTEGER, last_run TEXT, replays INTEGER)")
        db.execute("INSERT INTO runs VALUES (?, '2025-01-01', 1, NULL)", (planted["runs"],))
        db.execute("INSERT INTO usage VALUES ('f', 0, ?, 1)", (planted["usage"],))
        db.execute(
            "UPDATE interactions SET tests = ?, reason = ?, model = ?, request = json_set(request, '$.body.' || ?, 1), headers = ?, body = ? "
            "WHERE request LIKE '%chat/completions%'",
            (json.dumps([f"t::x[{planted['tests']}]"]), planted["reason"], planted["model"], planted["jsonkey"],
             json.dumps({planted["headername"]: ["1"], "x-trace": [extra["ini env"]]}),
             json.dumps({"text": f"{extra['ini pattern']} {extra['google oauth']} {extra['hugging face']}"})),
        )
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES (?)", (planted["extratable"],))
        db.execute("PRAGMA secure_delete = OFF")  # as many builds of SQLite have it, and cassettes written before llm_replay set it
        db.execute("INSERT INTO notes VALUES (?)", (planted["freepage"] + " " + "x" * 9000,))  # spills onto overflow pages
    with sqlite3.connect(kept) as db:
        db.execute("PRAGMA secure_delete = OFF")
        db.execute("DELETE FROM notes WHERE length(body) > 9000")  # its pages go to the freelist, bytes and all
    writer = f"""import os, sqlite3
db = sqlite3.connect({str(kept)!r}, isolation_level=None)
db.execute("PRAGMA journal_mode = WAL"); db.execute("PRAGMA wal_autocheckpoint = 0"); db.execute("PRAGMA secure_delete = OFF")
db.execute("INSERT INTO notes VALUES (?)", ({planted['wal']!r},)); db.execute("DELETE FROM notes WHERE body = ?", ({planted['wal']!r},))
os._exit(0)  # killed before closing: the -wal stays beside the file
"""
    subprocess.run([sys.executable, "-c", writer], check=True)
    wal = kept.with_name(kept.name + "-wal")
    assert wal.is_file() and planted["wal"].encode() in wal.read_bytes()

    assert main(["audit"]) == 1
    out = capsys.readouterr().out
    every = {**planted, **extra}
    audit, paths = audit_for(argparse.Namespace(paths=[], secret_env=[], secret_pattern=[]))
    values = [finding.value for path in paths for finding in audit.scan_path(path)]
    # in raw bytes a key may run on into the bytes after it: the finding holds it whole
    found = {place for place, value in every.items() if any(value in found_value for found_value in values)}
    assert found == set(every), f"not found: {set(every) - found}"
    assert f"{Path('cassettes') / 'llm_cache.sqlite3'}: deleted data: free" in out and f"{Path('cassettes') / wal.name}: byte offset " in out
    assert "(JSON, keys included)" in out and f"Remove them with: llm-replay scrub {Path('cassettes') / 'llm_cache.sqlite3'}" in out
    print(f"PLANTED found {len(found)}/{len(every)}", file=sys.stderr)

    assert main(["scrub", str(Path("cassettes") / "llm_cache.sqlite3")]) == 0
    assert "0 secrets left" in capsys.readouterr().out
    leftover = [place for place, value in every.items() for file in tmp_path.rglob("*") if file.is_file() and value.encode() in file.read_bytes()]
    assert leftover == [] and not wal.exists()
    assert main(["audit"]) == 0
    scrubbed = SQLiteCache(kept, readonly=True)
    assert scrubbed.get(clean_request.fingerprint) == clean_before, "the clean recording is as it was"
    scrubbed.close()
    with sqlite3.connect(kept) as db:  # what was no secret is all still there
        assert db.execute("SELECT count(*) FROM interactions").fetchone() == (2,)
        assert db.execute("SELECT count(*), min(body) FROM notes").fetchone() == (1, "<scrubbed>")
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        assert json.loads(db.execute("SELECT headers FROM interactions").fetchone()[0]) == {"<scrubbed>": ["1"], "x-trace": ["<scrubbed:TENANT_CREDS>"]}


def test_audit_without_detect_secrets_names_the_install_command(tmp_path, capsys, env, monkeypatch):
    from llm_replay.cli import secret_shapes

    clean = _cassette(tmp_path / "clean.sqlite3", {"messages": []}, {}, b"{}")
    monkeypatch.setitem(sys.modules, "detect_secrets.core.plugins.util", None)  # as if it were not installed
    secret_shapes._detectors.cache_clear()
    try:
        assert main(["audit", str(clean)]) == 2
    finally:
        secret_shapes._detectors.cache_clear()
    assert "pip install detect-secrets" in capsys.readouterr().err


def test_llm_era_shapes_that_detect_secrets_lacks_are_found_whole_and_never_as_slices():
    from llm_replay.cli.secret_shapes import secret_shapes

    private_key = "-----BEGIN " + "RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA7\\n-----END RSA PRIVATE KEY-----"
    shapes = {
        "Google OAuth access token": "ya29." + "a0AfB_byC1d2E3f4G5h6I7j8K9l0",
        "Google OAuth refresh token": "1//0" + "gAbCdEfGhIjKlMnOpQrStUvWxYz0123456",
        "Hugging Face token": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        "AWS session token": "IQoJb3JpZ2lu" + "X2VjEJr" + "A" * 40,
        "Azure AD client secret": "a1B" + "8Q~" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456",
        "private key": private_key,
    }
    text = json.dumps({name: value for name, value in shapes.items()})
    found = dict(secret_shapes(text))
    assert {kind: found.get(kind) for kind in shapes} == {**shapes, "private key": json.dumps(private_key)[1:-1]}, "whole, as JSON holds it"
    sliced = "".join(f"x{value}" for value in shapes.values() if not value.startswith("-"))  # each one a slice of a longer token
    assert [kind for kind, _ in secret_shapes(sliced) if kind in shapes] == []


def test_a_key_after_a_json_escape_or_as_a_url_path_segment_is_found():
    """A stored ``\\n`` ends with a letter and a path's slash is base64's too: neither may hide a key that touches it."""
    from llm_replay.cli.secret_shapes import secret_shapes

    openai_key, google_key = SHAPES["OpenAI API key"], SHAPES["Google API key"]
    assert dict(secret_shapes(json.dumps({"content": f"my .env:\n{openai_key}\tend"}))) == {"OpenAI API key": openai_key}
    assert dict(secret_shapes(f"GET /v1/keys/{google_key}/usage")) == {"Google API key": google_key}
    for python_repr in (f"b'\\x3c{google_key}\\x3e'", f"'\\U0001f511{google_key}'"):  # bytes and str reprs escape too
        assert dict(secret_shapes(python_repr)) == {"Google API key": google_key}, python_repr
    assert [kind for kind, _ in secret_shapes(f"x{openai_key} n{google_key}/") if kind in SHAPES] == [], "still never a slice"


def test_keys_behind_base64_bodies_are_found_and_scrubbed_in_cassettes_and_yaml_exports(tmp_path, capsys, env):
    """A body that is not UTF-8 is base64 in a cassette's request column and ``!!binary`` in a YAML export."""
    key = SHAPES["Anthropic API key"]
    cassette = SQLiteCache(tmp_path / "c.sqlite3", scrubber=Scrubber(environ={}))
    request = canonicalize("POST", "https://api.test/v1/upload", b"\x89PNG\xff key " + key.encode() + b"\x00", "application/octet-stream")
    cassette.put(Interaction.of(request, RecordedResponse(200, "OK", {}, b"{}"), tests=("tests/test_app.py::test_upload",)))
    cassette.close()
    export = tmp_path / "export.yaml"
    export.write_text(yaml.safe_dump({"interactions": [{"response": {"body": {"string": b"\x00\xff answer " + key.encode() + b"\xff" * 60}}}]}))
    assert "!!binary" in export.read_text()

    assert main(["audit", str(tmp_path / "c.sqlite3"), str(export)]) == 1
    out = capsys.readouterr().out
    assert "column request, base64 body decoded: Anthropic API key 'sk-ant…" in out
    assert f"{export}: line 4 (!!binary, decoded): Anthropic API key 'sk-ant…" in out

    assert main(["scrub", str(tmp_path / "c.sqlite3"), str(export)]) == 0
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "c.sqlite3"), str(export)]) == 0, capsys.readouterr().out
    stored = json.loads(sqlite3.connect(tmp_path / "c.sqlite3").execute("SELECT request FROM interactions").fetchone()[0])
    assert base64.b64decode(stored["body"]) == b"\x89PNG\xff key <scrubbed>\x00"
    assert yaml.safe_load(export.read_text())["interactions"][0]["response"]["body"]["string"] == b"\x00\xff answer <scrubbed>" + b"\xff" * 60


def test_detectors_run_only_where_their_literals_occur_still_find_their_keys_in_any_case():
    from llm_replay.cli.secret_shapes import secret_shapes

    planted = {
        "Mailchimp Access Key": "0123456789abcdef" * 2 + "-us" + "12",
        "Slack Token": "HTTPS://HOOKS." + "SLACK.COM/services/T0123ABCD/B0123ABCD/abcdefghijklmnop",
        "AWS Access Key": "wJalrXUtnFEMIK7MDENG" + "bPxRfiCYzzzzzzzzzzzz",
    }
    prose = "The model answered in one short paragraph. " * 50  # none of the literals: those detectors do not run
    text = prose + json.dumps({"mailchimp": planted["Mailchimp Access Key"], "webhook": planted["Slack Token"]}) + (
        f' AWS_Secret_Access_Key = "{planted["AWS Access Key"]}" ' + prose
    )
    found = {kind: value for kind, value in secret_shapes(text) if kind in planted}
    assert found == planted
    assert [kind for kind, _ in secret_shapes(prose) if kind in planted] == []


# Keys in each provider's own format, made at run time (a seeded generator) so this file holds none.
_KEYS = random.Random(20260514)
_ALNUM = string.ascii_letters + string.digits


def _run(length: int, alphabet: str = _ALNUM + "-_") -> str:
    return "".join(_KEYS.choice(alphabet) for _ in range(length))


def _fresh(make) -> str:
    """A key from ``make`` that does not happen to spell a placeholder word ("tesT3Bl…"), which the audit leaves alone."""
    from llm_replay.cli.secret_shapes import _PLACEHOLDER_WORDS

    while _PLACEHOLDER_WORDS.search(key := make()):
        pass
    return key


def _jwt() -> str:
    part = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")  # noqa: E731
    return part({"alg": "HS256", "typ": "JWT"}) + "." + part({"sub": _run(12, _ALNUM)}) + "." + _run(43)


# kind as the audit names it -> a maker of fresh keys. Fixed length (the provider's format fixes where the key ends):
FIXED_LENGTH_KEYS = {
    "Anthropic API key": lambda: "sk-" + "ant-api03-" + _run(93) + "AA",
    "OpenAI API key": lambda: "sk-" + "proj-" + _run(74) + "T3Blbk" + "FJ" + _run(74),
    "Google API key": lambda: "AI" + "za" + _run(35),
    "Hugging Face token": lambda: "hf" + "_" + _run(34, string.ascii_letters),
    "AWS access key id": lambda: "AK" + "IA" + _run(16, string.ascii_uppercase + "234567"),
    "Azure AD client secret": lambda: _run(3, _ALNUM) + "8Q" + "~" + _run(34, _ALNUM + "_~.-"),
    "GitHub token": lambda: "gh" + "p_" + _run(36, _ALNUM),
    "GitHub fine-grained token": lambda: "github" + "_pat_" + _run(22, _ALNUM) + "_" + _run(59, _ALNUM),
    "Slack Token": lambda: "xo" + "xb-" + _run(12, string.digits) + "-" + _run(13, string.digits) + "-" + _run(24, _ALNUM),
}
# No fixed length: the key runs as far as its characters do
RUN_KEYS = {
    "Google OAuth access token": lambda: "ya" + "29." + _run(160),
    "Google OAuth refresh token": lambda: "1//" + "0" + _run(100),
    "AWS session token": lambda: "IQoJb3JpZ2lu" + _run(300, _ALNUM + "/+") + "==",
}
# What touches the key: pytest's parametrize joins, a JSON \u escape (Go's encoder writes < > & so), a percent-escape,
# a form's "+"; letters and digits end the \u003c and %22 escapes, "-" and "_" are key characters of most shapes.
NEIGHBOURS = {
    "pytest id, first value": "tests/test_t.py::test_tenant[{}-gemini-2.5-flash]",
    "pytest id, later value": "tests/test_t.py::test_tenant[gpt-4o-{}]",
    "joined with _": "tenant_{}_eu",
    "JSON \\u escapes": "\\u003c{}\\u003e \\u201c{}\\u201d",
    "percent-escapes": "%22{}%22 key%3D{}%26",
    "form +": "q=my+key+{}+please",
}


def _planted_cassette(path: Path, keys: dict[str, str], contexts: dict[str, str]) -> tuple[Path, str]:
    """A cassette whose answer holds every key in every context (the text as stored, escapes and all), and whose
    test ids (``tests``, ``test_instants``) hold them too; the planted body text is returned."""
    pieces = [context.replace("{}", key) for key in keys.values() for context in contexts.values()]
    body = '{"choices": [' + ", ".join(f'"{piece}"' for piece in pieces) + "]}"
    json.loads(body)  # the \u escapes are JSON's own
    _cassette(path, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, {}, body.encode())
    ids = [f"tests/test_t.py::test_tenant[{key}-gemini-2.5-flash]" for key in keys.values()]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE interactions SET tests = ?", (json.dumps(ids),))
        db.executemany("INSERT INTO test_instants VALUES (?, '2025-01-01T00:00:00+00:00', 0)", [(test_id,) for test_id in ids])
    return path, body


def _findings(path: Path) -> list[tuple[str, str]]:
    audit, paths = audit_for(argparse.Namespace(paths=[str(path)], secret_env=[], secret_pattern=[]))
    return [(finding.kind, finding.value) for path in paths for finding in audit.scan_path(path)]


def test_scrub_of_test_ids_that_differ_only_by_their_keys_keeps_one_row_of_each_and_a_valid_cassette(tmp_path, capsys, env):
    """Two tenants' keys alone in parametrize ids ("t[<key 1>]", "t[<key 2>]") scrub to one id: test_instants' primary
    key refused the second UPDATE and scrub stopped with a traceback, the cassette unscrubbed."""
    first, second = _fresh(FIXED_LENGTH_KEYS["Google API key"]), _fresh(FIXED_LENGTH_KEYS["Google API key"])
    path = _cassette(tmp_path / "c.sqlite3", {"messages": [{"role": "user", "content": "hi"}]}, {}, b"{}")
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO test_instants VALUES (?, ?, 0)", [(f"t.py::t[{first}]", "2025-01-01T00:00:00+00:00"), (f"t.py::t[{second}]", "2025-01-02T00:00:00+00:00")])
    assert main(["scrub", str(path)]) == 0 and "0 secrets left" in capsys.readouterr().out
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT test_id FROM test_instants").fetchall() == [("t.py::t[<scrubbed>]",)]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("neighbour", NEIGHBOURS)
def test_a_key_glued_to_dashes_underscores_escapes_or_plus_is_found_whole_and_scrub_removes_exactly_it(tmp_path, capsys, env, neighbour):
    """The shapes' edges took "-", "_", "+" and an escape's last letter for part of a longer token: "AIza…-gemini-2.5-flash"
    in a parametrize id was reported by nothing. A key of fixed length is found to its last character and not beyond."""
    keys = {kind: _fresh(make) for kind, make in FIXED_LENGTH_KEYS.items()}
    path, body = _planted_cassette(tmp_path / "c.sqlite3", keys, {neighbour: NEIGHBOURS[neighbour]})
    assert main(["audit", str(path)]) == 1
    out = capsys.readouterr().out
    kinds = {"GitHub fine-grained token": "GitHub token"}
    found = _findings(path)
    for kind, key in keys.items():
        assert (kinds.get(kind, kind), key) in found, f"{kind} {neighbour}: {[item for item in found if key[:6] in item[1]]}"
        assert f": {kinds.get(kind, kind)} '{key[:min(6, len(key) // 4)]}…" in out  # masked as the report masks it
    assert not any(key in line for key in keys.values() for line in out.splitlines()), "masked"

    assert main(["scrub", str(path)]) == 0 and "0 secrets left" in capsys.readouterr().out
    assert [kind for kind, key in keys.items() if key.encode() in path.read_bytes()] == []
    expected = body
    for key in keys.values():
        expected = expected.replace(key, "<scrubbed>")
    cassette = SQLiteCache(path, readonly=True)
    (interaction,) = cassette.interactions()
    cassette.close()
    assert interaction.response.body.decode() == expected, "each key replaced, to the character, and nothing else"
    assert json.loads(interaction.response.body)
    assert set(interaction.tests) == {"tests/test_t.py::test_tenant[<scrubbed>-gemini-2.5-flash]"}
    with sqlite3.connect(path) as db:  # nine ids scrubbed alike are one row now: scrub does not fail on its primary key
        assert db.execute("SELECT test_id FROM test_instants").fetchall() == [("tests/test_t.py::test_tenant[<scrubbed>-gemini-2.5-flash]",)]


def test_a_key_of_no_fixed_length_is_found_at_any_edge_and_taken_whole_up_to_the_end_of_its_characters(tmp_path, capsys, env):
    """ya29., 1//0 and AWS session tokens have no fixed length: the finding runs to the end of the key's characters,
    so a neighbour joined with one of them ("-gemini-2" after a ya29. token, "+please" after a session token) goes too:
    the scrub errs on the side of removing the key whole."""
    keys = {kind: _fresh(make) for kind, make in RUN_KEYS.items()}
    path, body = _planted_cassette(tmp_path / "c.sqlite3", keys, NEIGHBOURS)
    assert main(["audit", str(path)]) == 1
    out = capsys.readouterr().out
    found = _findings(path)
    for kind, key in keys.items():
        assert f": {kind} '{key[:6]}…" in out
        values = {value for found_kind, value in found if found_kind == kind and key in value}
        assert key in values, f"{kind} alone, between escapes or quotes: exactly the key"
        assert values <= {key, key + "-gemini-2", key + "_eu", key + "+please"}, values
    assert main(["scrub", str(path)]) == 0 and "0 secrets left" in capsys.readouterr().out
    assert not any(key.encode() in path.read_bytes() for key in keys.values())
    cassette = SQLiteCache(path, readonly=True)
    (interaction,) = cassette.interactions()
    cassette.close()
    scrubbed = json.loads(interaction.response.body)["choices"]
    assert "\\u003c<scrubbed>\\u003e \\u201c<scrubbed>\\u201d" in interaction.response.body.decode()
    assert "%22<scrubbed>%22 key%3D<scrubbed>%26" in scrubbed and "tests/test_t.py::test_tenant[gpt-4o-<scrubbed>]" in scrubbed


def test_a_jwt_glued_to_a_dash_or_an_escape_loses_its_header_and_claims_to_scrub(tmp_path, capsys, env):
    """detect-secrets finds a JWT as its header and claims (``eyJ….eyJ….``) wherever it stands; what scrub removes
    is those, so the token no longer says who it is nor verifies."""
    token = _jwt()
    header_and_claims = token.rsplit(".", 1)[0] + "."
    path, _ = _planted_cassette(tmp_path / "c.sqlite3", {"JSON Web Token": token}, NEIGHBOURS)
    assert main(["audit", str(path)]) == 1
    assert ("JSON Web Token", header_and_claims) in _findings(path)
    capsys.readouterr()
    assert main(["scrub", str(path)]) == 0 and header_and_claims.encode() not in path.read_bytes()


@pytest.mark.parametrize("neighbour", ["-", "_"])
def test_a_looser_look_alike_glued_after_a_dash_or_underscore_is_left_alone_yet_found_elsewhere(neighbour):
    """A made-up key that is not in its provider's format (sk-proj- and 28 characters; hf_ and digits) has only a prefix
    and a run to go by; right after "-" or "_" that is as likely a slice of base64url, so there only the provider's
    format counts. After any other character, or an escape, it is found."""
    from llm_replay.cli.secret_shapes import secret_shapes

    look_alikes = {"OpenAI API key": SHAPES["OpenAI API key"], "Hugging Face token": "hf" + "_Rq7Wm3Nd9Kc2Vb5Xz8Lp1Rt6Gf0Js4Ya7EoIu"}
    for kind, value in look_alikes.items():
        assert dict(secret_shapes(f"[gpt-4o{neighbour}{value}]")).get(kind) is None
        for text in (f"[{value}{neighbour}gpt-4o]", f"\\u003c{value}\\u003e", f"%22{value}%22", f"a+{value}+b", f"[{value}]"):
            assert value in (dict(secret_shapes(text)).get(kind) or ""), text


def test_words_hashes_and_base64_that_merely_hold_a_key_prefix_are_not_keys(tmp_path, capsys, env):
    """Wider edges must not turn ordinary text into findings: a prefix in the middle of a word or identifier, a slug,
    an identifier made of words, a key shape with more characters after it (a slice), hex digests, base64 and
    base64url blobs (an OpenAI reasoning item's encrypted_content is base64url: "-sk-", "_hf_" and a long run occur)."""
    from llm_replay.cli.secret_shapes import secret_shapes

    google, hf = _fresh(FIXED_LENGTH_KEYS["Google API key"]), _fresh(FIXED_LENGTH_KEYS["Hugging Face token"])
    noise = random.Random(7)
    blob = lambda size: noise.randbytes(size)  # noqa: E731
    ordinary = [
        f"my{google}", f"pdf{hf}", f"{google}Q", "model_AIza" + "LoaderForGoogleGenerativeModelsV2Beta",
        "load_hf_" + "AutoModelForSequenceClassification()", "tokenizer = hf" + "_PretrainedTokenizerConfigurationWithDefaults",
        "https://example.com/docs/sk-" + "learn-tutorial-for-beginners-2024", "en-sk-" + "products-and-services-list-2025",
        hashlib.sha256(b"x").hexdigest(), hashlib.sha512(b"y").hexdigest(),
        base64.b64encode(blob(30_000)).decode(), base64.urlsafe_b64encode(blob(30_000)).decode(),
        base64.urlsafe_b64encode(blob(300)).decode() + "-sk-" + base64.urlsafe_b64encode(blob(300)).decode()
        + "_hf_" + "Ab1Cd2Ef3Gh4" * 4 + base64.urlsafe_b64encode(blob(300)).decode(),
    ]
    for text in ordinary:
        assert list(secret_shapes(json.dumps({"text": text}))) == [], text[:80]
    path = _cassette(tmp_path / "clean.sqlite3", {"messages": [{"role": "user", "content": ordinary[0]}]}, {}, json.dumps({"texts": ordinary}).encode())
    assert main(["audit", str(path)]) == 0, capsys.readouterr().out


TENANT_KEYS_TEST = '''
import json, pathlib
import openai
import pytest

KEYS = json.loads((pathlib.Path(__file__).parent / "tenant_keys.json").read_text())  # a vault export: no variable names them


@pytest.mark.parametrize("api_key,model", [(KEYS["google"], "gemini-2.5-flash"), (KEYS["hf"], "gpt-4o-mini"), (KEYS["github"], "gpt-4o")])
def test_tenant(llm_cache, api_key, model):
    client = openai.OpenAI(base_url="{base_url}", api_key="sk-test-fake", max_retries=0)
    client.chat.completions.create(model=model, messages=[{{"role": "user", "content": "hello " + model}}])


@pytest.mark.parametrize("region,api_key", [("eu", KEYS["azure"])])
def test_region(llm_cache, region, api_key):
    client = openai.OpenAI(base_url="{base_url}", api_key="sk-test-fake", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hello " + region}}])
'''


def test_keys_in_parametrize_ids_joined_with_dashes_are_reported_and_scrubbed_from_a_recorded_cassette(llm_pytester, server, env, capsys):
    """End to end, as the tester found it: keys from a file (no environment variable, so the recording's scrubber does not
    know them) as parametrize values, which pytest joins with "-": every one reported, and scrub leaves the ids readable."""
    # shapes of at most 100 characters: pytest names a longer value by its argument's name (api_key0)
    keys = {name: _fresh(FIXED_LENGTH_KEYS[kind]) for name, kind in
            {"google": "Google API key", "hf": "Hugging Face token", "github": "GitHub token", "azure": "Azure AD client secret"}.items()}
    (llm_pytester.path / "tenant_keys.json").write_text(json.dumps(keys))
    llm_pytester.makepyfile(test_tenants=TENANT_KEYS_TEST.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record", "-p", "no:cacheprovider").assert_outcomes(passed=4)
    cassette = cassette_file(llm_pytester)
    assert all(key.encode() in cassette.read_bytes() for key in keys.values()), "stored in the test ids, as the tester found"

    assert main(["audit", str(cassette)]) == 1
    out = capsys.readouterr().out
    for kind in ("Google API key", "Hugging Face token", "GitHub token", "Azure AD client secret"):
        assert f"column tests (JSON): {kind} '" in out and f"column test_id: {kind} '" in out, kind
    assert main(["scrub", str(cassette)]) == 0
    capsys.readouterr()
    assert [name for name, key in keys.items() for path in cassette.parent.iterdir() if key.encode() in path.read_bytes()] == []
    assert main(["textconv", str(cassette)]) == 0
    shown = capsys.readouterr().out
    for test_id in ("test_tenant[<scrubbed>-gemini-2.5-flash]", "test_tenant[<scrubbed>-gpt-4o-mini]", "test_tenant[<scrubbed>-gpt-4o]", "test_region[eu-<scrubbed>]"):
        assert test_id in shown, shown
    assert main(["audit", str(cassette)]) == 0

    server.stop()
    env.setenv("CI", "true")
    llm_pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)  # the scrubbed cassette still replays
