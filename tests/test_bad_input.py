"""Bad input met as a hostile reviewer or a confused new user would bring it: each gets an error naming the thing and
the fix (never a traceback or a bare library message), and nothing already recorded is lost or changed."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path

import httpcore2  # noqa: F401  openai's transport: imported once here, so inner sessions cannot leave a stale generation
import openai  # noqa: F401
import pytest
from conftest import cassette_file

from llm_replay.cli import main
from llm_replay.errors import CassetteError
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores import sqlite as sqlite_store
from llm_replay.stores.sqlite import SQLiteCache

pytestmark = pytest.mark.usefixtures("env")

ASKING = '''
import openai


def ask(prompt):
    client = openai.OpenAI(base_url="{base_url}", max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": prompt}}]).choices[0].message.content


def test_damaged(llm_cache):
    assert ask("damaged").startswith("echo")


def test_sound(llm_cache):
    assert ask("sound").startswith("echo")
'''


def _cassette(path: Path, count: int = 200) -> Path:
    """A cassette of ``count`` chat recordings, one per test (enough rows to span many pages)."""
    store = SQLiteCache(path)
    for n in range(count):
        request = canonicalize(
            "POST", "https://api.openai.com/v1/chat/completions",
            json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {n} " + "x" * 300}]}).encode(), "application/json",
        )
        answer = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"}}]}
        store.put(Interaction.of(request, RecordedResponse(200, "OK", {"content-type": ["application/json"]}, json.dumps(answer).encode()), tests=(f"tests/test_a.py::test_{n}",)))
    store.close()
    return path


def _damaged_row(path: Path, change: str) -> str:
    """Set one column of one recording to what llm_replay never writes (a hand edit); the recording's key."""
    with sqlite3.connect(path) as connection:
        fingerprint, occurrence = connection.execute("SELECT fingerprint, occurrence FROM interactions ORDER BY fingerprint LIMIT 1").fetchone()
        connection.execute(f"UPDATE interactions SET {change} WHERE fingerprint = ? AND occurrence = ?", (fingerprint, occurrence))
    connection.close()
    return f"{fingerprint}#{occurrence}"


def _damaged_pages(path: Path) -> None:
    """Overwrite pages in the middle of the file, as a bad disk or a bad copy would, leaving its first page whole."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 3 * 4096] = random.Random(7).randbytes(3 * 4096)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("change", "named"),
    [("headers = 'not json'", "column headers is 'not json'"), ("status = 'two hundred'", "column status is 'two hundred'")],
)
def test_a_damaged_recording_fails_only_the_test_that_asks_it_naming_it_and_is_kept(llm_pytester, server, env, change, named):
    """A hand-edited row failed every test of the read-ahead window with a bare JSONDecodeError or an httpx TypeError."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    llm_pytester.makepyfile(test_app=ASKING.format(base_url=server.base_url))
    llm_pytester.runpytest("--llm-mode=record").assert_outcomes(passed=2)
    path = cassette_file(llm_pytester)
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE interactions SET {change} WHERE tests = ?", (json.dumps(["test_app.py::test_damaged"]),))
    connection.close()
    before = path.read_bytes()
    for mode in ("replay", "record"):
        result = llm_pytester.runpytest(f"--llm-mode={mode}")
        result.assert_outcomes(passed=1, failed=1)
        text = result.stdout.str()
        assert f"recording " in text and f"cannot be read ({named}" in text and "llm-replay rm --cassette" in text, text
        assert "JSONDecodeError" not in text and "TypeError" not in text
        assert path.read_bytes() == before, "the damaged row is kept as it was, and nothing else changes"


COMMANDS = (
    ("ls", "--cassette", "{bad}"), ("ls", "--json", "--cassette", "{bad}"), ("stats", "--cassette", "{bad}"),
    ("export", "--cassette", "{bad}", "--yaml", "{out}"), ("diff", "{good}", "{bad}"), ("copy", "{bad}", "{out}.sqlite3"),
    ("textconv", "{bad}"), ("merge", "{base}", "{good}", "{bad}"), ("audit", "{bad}"),
)


@pytest.mark.parametrize("damage", ["row", "pages"])
def test_every_command_names_a_damaged_cassette_and_changes_nothing(tmp_path, env, capsys, damage):
    """A damaged page (found only when a query reads it) or a hand-edited row crashed ls, stats, export, diff, copy,
    textconv, merge and audit with sqlite3.DatabaseError, JSONDecodeError or TypeError tracebacks."""
    env.chdir(tmp_path)
    good = _cassette(tmp_path / "good.sqlite3")
    bad = shutil.copyfile(good, tmp_path / "bad.sqlite3")
    if damage == "row":
        _damaged_row(bad, "headers = 'not json', body = 42")
    else:
        _damaged_pages(bad)
    (tmp_path / "base").write_bytes(b"")
    before = {path: path.read_bytes() for path in (good, bad)}
    for command in COMMANDS:
        argv = [part.format(bad=bad, good=good, base=tmp_path / "base", out=tmp_path / "out") for part in command]
        code = main(argv)
        err = capsys.readouterr().err
        if command[0] == "merge":
            assert code == 2, "a git merge driver says the merge failed"
        if code == 2:
            assert str(bad) in err and "Traceback" not in err, (argv, err)
        assert {path: path.read_bytes() for path in (good, bad)} == before, argv


def test_a_recording_whose_request_is_not_json_is_listed_shown_by_name_and_can_be_deleted(tmp_path, env, capsys):
    """ls and rm crashed on a stored request that is not JSON, so the damaged recording could not even be deleted."""
    path = _cassette(tmp_path / "c.sqlite3", count=3)
    key = _damaged_row(path, "request = 'not json'")
    assert main(["ls", "--cassette", str(path)]) == 0
    assert "(stored request unreadable)" in capsys.readouterr().out
    assert main(["show", "--cassette", str(path), key]) == 2
    assert f"llm-replay rm --cassette {path} '{key}'" in capsys.readouterr().err
    assert main(["rm", "--cassette", str(path), key]) == 0
    assert "deleted 1 recording" in capsys.readouterr().out
    assert len(SQLiteCache(path, readonly=True)) == 2


def test_a_cassette_locked_past_the_busy_timeout_says_who_holds_it_not_to_restore_it(tmp_path, monkeypatch):
    """'cannot be used (database is locked) ... Restore it from git' told the user to throw away a sound cassette."""
    path = _cassette(tmp_path / "c.sqlite3", count=1)
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_S", 0.2)  # the wait is the only thing shortened: 60 s in use
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO meta VALUES ('held', 'by another process')")
    try:
        store = SQLiteCache(path)
        with pytest.raises(CassetteError) as raised:
            store.put(Interaction.of(canonicalize("POST", "https://api.openai.com/v1/x", b"{}", "application/json"), RecordedResponse(200, "OK", {}, b"{}")))
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = str(raised.value)
    assert f"cassette {path} is locked" in message and "another pytest run" in message and "Restore" not in message, message
    assert len(SQLiteCache(path, readonly=True)) == 1


def test_yaml_that_does_not_pair_up_or_carries_a_number_for_a_body_is_refused_naming_it(tmp_path, env, capsys):
    """Unequal requests:/responses: lists crashed import with zip()'s ValueError; {string: 42} imported 42 zero bytes."""
    env.chdir(tmp_path)
    unpaired = tmp_path / "unpaired.yaml"
    unpaired.write_text("requests: [{uri: 'https://api.openai.com/v1/models', method: GET}]\nresponses: []\n")
    numeric = tmp_path / "numeric.yaml"
    numeric.write_text(
        "interactions:\n- request: {uri: 'https://api.openai.com/v1/models', method: GET}\n"
        "  response: {status: {code: 200, message: OK}, headers: {}, body: {string: 42}}\n"
    )
    cassette = tmp_path / "c.sqlite3"
    for path, named in ((unpaired, "1 requests but 0 responses"), (numeric, "body string is int 42")):
        assert main(["import", "--cassette", str(cassette), str(path)]) == 2
        assert named in capsys.readouterr().err
    assert not cassette.exists(), "nothing was imported"


def test_export_into_a_file_says_so(tmp_path, env, capsys):
    """--yaml naming a file (or a folder under one) crashed with NotADirectoryError."""
    path = _cassette(tmp_path / "c.sqlite3", count=1)
    (tmp_path / "afile").write_text("mine")
    for target in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert main(["export", "--cassette", str(path), "--yaml", str(target)]) == 2
        assert "cannot" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"
