"""Bad input, round 3: a cassette path that names something other than a file gets an error naming it and the fix,
never a hang."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from llm_replay.cli import main

pytestmark = pytest.mark.usefixtures("env")


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe where the cassette should be. Opening one to read waits for a writer for ever; a thread plays the
    writer for a few seconds, so code that opens it fails the test (reading 'x') instead of hanging the suite."""
    path = tmp_path / "llm_cache.sqlite3"
    os.mkfifo(path)
    done = threading.Event()

    def unblock_a_reader() -> None:
        deadline = time.monotonic() + 5
        while not done.is_set() and time.monotonic() < deadline:
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) until someone opened it to read
            except OSError:
                time.sleep(0.02)
                continue
            os.write(descriptor, b"x")
            os.close(descriptor)

    thread = threading.Thread(target=unblock_a_reader, daemon=True)
    thread.start()
    yield path
    done.set()
    thread.join()


@pytest.mark.parametrize("mode", ["replay", "record"])
def test_a_named_pipe_as_the_cassette_stops_the_session_naming_it_instead_of_hanging(llm_pytester, fifo, mode):
    """A FIFO (or a device) named as the cassette hung the session for ever: the first look at the file opened it to read."""
    llm_pytester.makepyfile("def test_it(llm_cache):\n    pass\n")
    result = llm_pytester.runpytest_inprocess(f"--llm-mode={mode}", f"--llm-cassette={fifo}")
    text = result.stdout.str() + result.stderr.str()
    assert f"cassette {fifo} is a named pipe (FIFO), not a file; point --llm-cassette (ini llm_cassette) at a file" in text
    assert result.ret != 0 and "Traceback" not in text
    assert fifo.is_fifo()


def test_llm_replay_commands_name_a_device_as_no_cassette(capsys):
    """The same for the llm-replay commands (here /dev/null, a character device)."""
    assert main(["ls", "--cassette", os.devnull]) == 2
    assert f"cassette {os.devnull} is a character device, not a file" in capsys.readouterr().err


def test_a_cassette_path_ending_in_a_slash_is_a_folder_not_a_file_named_like_it(llm_pytester, capsys):
    """--llm-cassette=recordings/ (a folder meant) recorded into a file named 'recordings': the path lost its slash."""
    llm_pytester.makepyfile("def test_it(llm_cache):\n    pass\n")
    result = llm_pytester.runpytest_inprocess("--llm-mode=record", "--llm-cassette=recordings/")
    expected = "cassette recordings/ names a folder (it ends in '/'); a cassette is one file: point --llm-cassette (ini llm_cassette) at a file inside it, e.g. recordings/llm_cache.sqlite3"
    assert expected in result.stdout.str() + result.stderr.str()
    assert result.ret != 0 and not (llm_pytester.path / "recordings").exists()
    assert main(["ls", "--cassette", "recordings/"]) == 2
    assert expected in capsys.readouterr().err
