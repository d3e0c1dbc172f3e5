"""`llm-replay audit`: every key shape and secret env value found with file, entry and field; clean is 0."""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

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
