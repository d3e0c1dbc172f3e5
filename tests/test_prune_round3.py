"""Round three of "nothing recorded is lost": a refresh deletes nothing another running session, or the test a stopped
run ended in, may replay; rm --unused deletes nothing while another session runs; a run stopped by pytest.exit (any
return code) or an INTERNALERROR prunes nothing; a failing test's hold, and a test that last passed on another branch,
outlive a checkout without the test (its file absent, or the file lacking it); a test made by name at run time is not
taken for deleted; a damaged owners row can be deleted by its key. Cassettes and bookkeeping are seeded as the runs
before leave them (test_prune_round2.recorded, stored)."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import openai  # noqa: F401  (imported here once: an inner session's own import of it is dropped with that session, ~0.6 s each)
import pytest
from conftest import ASK_EACH, cassette_file, write_ini
from test_prune_round2 import prompts, recorded, recording

from llm_replay.cli import main
from llm_replay.engine.project import run_ledger
from llm_replay.engine.pruning import now_stamp
from llm_replay.model.interaction import Interaction
from llm_replay.model.runs import RunRecord
from llm_replay.stores.sqlite import SQLiteCache


def stored(pytester: pytest.Pytester, *recordings: Interaction) -> Path:
    """The inner project's cassette holding ``recordings``, with no bookkeeping of who passed."""
    path = cassette_file(pytester)
    path.parent.mkdir(exist_ok=True)
    store = SQLiteCache(path)
    for interaction in recordings:
        store.put(interaction)
    store.close()
    return path


ASKING = '''
import os

import openai
import pytest
''' + ASK_EACH + '''

def test_owner(llm_cache):
    ask(os.environ["OWNER_ASKS"])
'''
NEW_REPLAYS_SHARED = ASKING + '''

def test_new(llm_cache):
    ask("shared")
'''


def test_a_refresh_keeps_what_it_replaced_while_another_session_runs(llm_pytester: pytest.Pytester, server, env, capsys) -> None:
    """test_owner now asks 'new': its refresh replaced 'old', and deleted it, while another session ran against the
    cassette, whose tests may replay 'old' (their use reaches the bookkeeping only when that session ends): a prune
    deletes nothing then, a refresh did. Now the refresh keeps it, owned by test_owner as before, names the session, and
    a prune once it has ended deletes it (test_owner's refresh passed without it)."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("OWNER_ASKS", "new")
    llm_pytester.makepyfile(test_app=ASKING.format(base_url=server.base_url))
    cassette = recorded(llm_pytester, recording(server.base_url, "old", "test_app.py::test_owner"))
    ledger = run_ledger(str(cassette), llm_pytester.path)
    ledger.start_session("running", os.getpid(), socket.gethostname(), now_stamp())  # this process: alive
    refreshed = llm_pytester.runpytest("--llm-mode=refresh")
    refreshed.assert_outcomes(passed=1)
    refreshed.stdout.fnmatch_lines(["llm_replay: refresh kept 1 earlier recording of the refreshed tests: another pytest session runs against *"])
    assert prompts(cassette) == {"old", "new"}
    ledger.end_sessions(["running"])
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune"]) == 0
    assert capsys.readouterr().out.startswith("deleted 1 recording"), "it goes once the session has ended"
    assert prompts(cassette) == {"new"}


def test_a_failing_tests_hold_outlives_a_checkout_without_its_file(llm_pytester: pytest.Pytester, server, env, capsys) -> None:
    """test_x recorded 'x' and failed on a feature branch, holding it (the bookkeeping is seeded as that run leaves it).
    On a branch without test_x.py (or with it stashed) its file is absent, so its hold counted as a deleted test's:
    llm-replay prune there deleted 'x', and back on the feature branch test_x missed it. A failing test now holds what
    it used until it passes, or until llm-replay rm --test lets go."""
    llm_pytester.makepyfile(test_app="def test_y(llm_cache):\n    pass\n")  # no test_x.py on this branch
    x = recording(server.base_url, "x", "test_x.py::test_x")
    cassette = stored(llm_pytester, x)
    failed = RunRecord("failed", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00", 1)
    run_ledger(str(cassette), llm_pytester.path).record(failed, {"test_app.py::test_y": ()}, {}, unpassed={"test_x.py::test_x": [x.key]})
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["prune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deleted 0 recordings") and "kept 1 recording used by tests whose latest run did not pass: test_x.py::test_x" in out, out
    assert prompts(cassette) == {"x"}, "back on the feature branch, test_x replays it"


def test_rm_deletes_a_recording_whose_owners_cannot_be_read_by_its_key(tmp_path, env, capsys) -> None:
    """A row whose tests column another program overwrote stopped ls, show and rm, whose message said to set it right
    in place with sqlite3: rm by its key read every row's owners first, that one too. rm KEY now reads only the rows
    named, deletes the damaged one and says its owners could not be read; the message of ls names that rm."""
    path = tmp_path / "c.sqlite3"
    store = SQLiteCache(path)
    for prompt in ("damaged", "sound"):
        store.put(recording("https://api.test/v1", prompt, f"t.py::test_{prompt}"))
    store.close()
    with sqlite3.connect(path) as db:
        fingerprint = db.execute("SELECT fingerprint FROM interactions WHERE tests LIKE '%test_damaged%'").fetchone()[0]
        db.execute("UPDATE interactions SET tests = 'not json' WHERE fingerprint = ?", (fingerprint,))
    db.close()
    env.chdir(tmp_path)
    assert main(["ls", "--cassette", str(path)]) == 2
    assert f"delete it (llm-replay rm --cassette {path} '{fingerprint}#0')" in capsys.readouterr().err
    assert main(["rm", "--cassette", str(path), fingerprint[:12]]) == 0
    out = capsys.readouterr().out
    assert "its owners cannot be read (column tests is 'not json'" in out and "deleted 1 recording" in out, out
    assert prompts(path) == {"sound"}


GENERATED = '''
import os

import openai
''' + ASK_EACH + '''

for case in os.environ.get("CASES", "a,b").split(","):
    def check(llm_cache, case=case):
        ask(case)

    globals()["test_case_" + case] = check
'''


def test_a_test_made_by_name_at_run_time_is_not_taken_for_deleted(llm_pytester: pytest.Pytester, server, env) -> None:
    """test_case_b is made in a loop (globals()[name] = ...), from the environment: a run that made only test_case_a
    collected the file whole, and the file never spells 'test_case_b', so it took it for deleted and --llm-prune deleted
    its recording. A file that makes tests by name (globals(), setattr(), exec()) cannot tell: its missing tests keep."""
    llm_pytester.makepyfile(test_app=GENERATED.format(base_url=server.base_url))
    cassette = recorded(
        llm_pytester,
        recording(server.base_url, "a", "test_app.py::test_case_a"),
        recording(server.base_url, "b", "test_app.py::test_case_b"),
    )
    env.setenv("CASES", "a")
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    assert prompts(cassette) == {"a", "b"}


def test_a_test_that_last_passed_on_another_branch_is_not_deleted_by_its_files_absence(llm_pytester: pytest.Pytester, server, env, capsys) -> None:
    """test_n, added on branch feature, recorded 'n' and passed there. On a branch without test_new.py (a cassette not
    committed, or carried over uncommitted, stays in the working tree) its file is absent, so llm-replay prune took it
    for deleted and deleted 'n'; back on feature, test_n missed it. A test whose latest pass was made elsewhere and
    whose file is absent here is another branch's test: it keeps what it owns (llm-replay rm --test lets go)."""
    llm_pytester.makepyfile(test_app="def test_y(llm_cache):\n    pass\n")
    new = recording(server.base_url, "n", "test_new.py::test_n")
    cassette = stored(llm_pytester, new)
    feature = RunRecord("feature", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00", 1, ("feature", "f" * 40))
    run_ledger(str(cassette), llm_pytester.path).record(feature, {"test_new.py::test_n": [new.key]}, {})
    env.chdir(llm_pytester.path)  # no git here: every pass made in git is another branch's
    capsys.readouterr()
    assert main(["prune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("deleted 0 recordings") and "1 test(s) last passed on another branch" in out, out
    assert prompts(cassette) == {"n"}


EXITING = NEW_REPLAYS_SHARED + '''    pytest.exit("enough for today", returncode=0)
'''


def test_a_run_a_test_ends_with_pytest_exit_and_a_returncode_prunes_nothing(llm_pytester: pytest.Pytester, server, env) -> None:
    """test_new replays test_owner's 'shared' (test_owner asks nothing now), then calls pytest.exit(..., returncode=0):
    its use never reaches a report. The run counted as interrupted only with exit status 2 (Ctrl-C, or pytest.exit
    without a return code), so --llm-prune deleted 'shared' under test_new (with returncode=1 too). Any pytest.exit now
    counts as an interruption: what the test it stopped used is unknown."""
    llm_pytester.makepyfile(test_app=EXITING.format(base_url=server.base_url))
    cassette = recorded(llm_pytester, recording(server.base_url, "shared", "test_app.py::test_owner"))
    env.setenv("OWNER_ASKS", "")
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune", "-p", "no:randomly")
    assert pruned.ret == pytest.ExitCode.OK
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted nothing: the run was interrupted*"])
    assert prompts(cassette) == {"shared"}


def test_a_run_on_a_branch_whose_file_lacks_a_test_does_not_take_it_for_deleted(llm_pytester: pytest.Pytester, server) -> None:
    """On branch feature, test_app.py gained test_z (it passed there, recording 'z') and test_w (it failed there,
    holding 'w'). On a branch whose test_app.py lacks both (never spelling them), a run collects the file whole and
    took both for deleted: its --llm-prune deleted 'z' and 'w', and its record wiped test_w's hold. A missing test whose
    latest pass was made on another branch, or that holds what it used in a run it did not pass, is not taken for
    deleted (llm-replay rm --test lets go)."""
    llm_pytester.makepyfile(test_app="def test_y(llm_cache):\n    pass\n")
    z, w = recording(server.base_url, "z", "test_app.py::test_z"), recording(server.base_url, "w", "test_app.py::test_w")
    cassette = stored(llm_pytester, z, w)
    feature = RunRecord("feature", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00", 1, ("feature", "f" * 40))
    ledger = run_ledger(str(cassette), llm_pytester.path)
    ledger.record(feature, {"test_app.py::test_z": [z.key]}, {}, unpassed={"test_app.py::test_w": [w.key]})
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune")  # no git here: every pass made in git is another branch's
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["llm_replay: --llm-prune deleted 0 recordings *"])
    assert prompts(cassette) == {"z", "w"}
    assert ledger.holds() == {w.key: {"test_app.py::test_w"}}


INTERNAL_ERROR = '''
def pytest_runtest_makereport(item, call):
    if item.name == "test_new" and call.when == "call":
        raise RuntimeError("a plugin's bug")
'''


def test_a_session_ended_by_an_internal_error_prunes_nothing(llm_pytester: pytest.Pytester, server, env) -> None:
    """A session that stops with INTERNALERROR (a plugin's hook raising; pytest-xdist's controller when a worker calls
    pytest.exit) still reaches its end: test_new, which replayed test_owner's 'shared', reported nothing of it, and
    --llm-prune deleted 'shared' as if the run had ended well. Exit status 3 now counts as an interruption."""
    llm_pytester.makepyfile(test_app=NEW_REPLAYS_SHARED.format(base_url=server.base_url))
    llm_pytester.makeconftest(INTERNAL_ERROR)
    cassette = recorded(llm_pytester, recording(server.base_url, "shared", "test_app.py::test_owner"))
    env.setenv("OWNER_ASKS", "")
    pruned = llm_pytester.runpytest("--llm-mode=replay", "--llm-prune", "-p", "no:randomly")
    assert pruned.ret == pytest.ExitCode.INTERNAL_ERROR
    assert prompts(cassette) == {"shared"}


MIXED = ASKING + '''

@pytest.mark.llm_cache(mode="replay")
def test_new(llm_cache):
    ask("old")
    pytest.exit("enough for today")
'''


def test_an_interrupted_refresh_keeps_what_it_replaced(llm_pytester: pytest.Pytester, server, env) -> None:
    """ini llm_mode = refresh; test_owner now asks 'new', so its refresh replaced 'old'; test_new (marked to replay)
    replayed 'old', then the run was stopped (pytest.exit, Ctrl-C): its use never reached a report, and the end of the
    run deleted 'old' under it. A refresh of an interrupted run keeps what it replaced, for a prune once a whole run
    says who uses it."""
    env.setenv("OPENAI_API_KEY", server.api_key)
    env.setenv("OWNER_ASKS", "new")
    write_ini(llm_pytester, "llm_mode = refresh")
    llm_pytester.makepyfile(test_app=MIXED.format(base_url=server.base_url))
    cassette = recorded(llm_pytester, recording(server.base_url, "old", "test_app.py::test_owner"))
    stopped = llm_pytester.runpytest("-p", "no:randomly")
    assert stopped.ret == pytest.ExitCode.INTERRUPTED
    stopped.stdout.fnmatch_lines(["llm_replay: refresh kept 1 earlier recording of the refreshed tests: the run was interrupted*"])
    assert prompts(cassette) == {"old", "new"}


def test_rm_unused_deletes_nothing_while_another_session_runs(llm_pytester: pytest.Pytester, server, env, capsys) -> None:
    """llm-replay rm --unused deletes what llm-replay prune would; a prune deletes nothing while another session runs
    (its tests may replay what the bookkeeping frees), rm --unused deleted it all the same. It now refuses in the same
    words; --dry-run lists."""
    other = recording(server.base_url, "other", "test_app.py::test_other")
    cassette = recorded(llm_pytester, other)
    ledger = run_ledger(str(cassette), llm_pytester.path)
    ledger.record(RunRecord("later", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00", 1), {"test_app.py::test_other": ()}, {})
    ledger.start_session("running", os.getpid(), socket.gethostname(), now_stamp())
    llm_pytester.makepyfile(test_app="def test_other(llm_cache):\n    pass\n")
    env.chdir(llm_pytester.path)
    capsys.readouterr()
    assert main(["rm", "--unused", "--dry-run"]) == 0
    assert "would delete 1 recording" in capsys.readouterr().out
    assert main(["rm", "--unused"]) == 2
    assert "deleted nothing (1 recording would go): another pytest session runs against" in capsys.readouterr().err
    assert prompts(cassette) == {"other"}
