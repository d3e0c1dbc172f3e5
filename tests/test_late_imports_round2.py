"""Late imports, attacked: an HTTP library first imported where the patches cannot simply be rebuilt around it.

Each case is a fresh interpreter (the import state must be new) running ``llm_replay.use_cassette``, the same patches
the pytest plugin uses, with a real HTTP library against the loopback fake; a plain script, not a pytest session,
to stay cheap (~0.4 s each).
"""

from __future__ import annotations

import pytest
import yaml

from conftest import printed

# Each script's start; most then build the patches with requests and urllib3 not imported yet (so withheld).
PROLOGUE = '''
import json, sys, urllib.request
import llm_replay

URL, KEY = {url!r}, {key!r}
HEADERS = {{"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}}


def chat(prompt):
    return {{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": prompt}}]}}


def through_urllib(prompt):
    request = urllib.request.Request(URL + "/chat/completions", data=json.dumps(chat(prompt)).encode(), headers=HEADERS)
    return urllib.request.urlopen(request, timeout=10).read()


def build_the_patches():
    with llm_replay.use_cassette(None, mode="record"):
        assert not {{"requests", "urllib3"}} & set(sys.modules), "withheld, or the rest proves nothing"
'''

VCRPY_CASSETTE_THEN_REQUESTS = '''
build_the_patches()
import vcr

with vcr.use_cassette({cassette!r}, record_mode="all") as cassette:
    import requests

    answer = requests.post(URL + "/chat/completions", json=chat("asked under vcrpy's own cassette"), headers=HEADERS, timeout=10)
    print("STATUS", answer.status_code)
print("VCRPY RECORDED", len(cassette))
'''

FAILED_THEN_RETRIED_IMPORT = '''
build_the_patches()
with llm_replay.use_cassette(None, mode="record") as recorder:
    sys.modules["idna"] = None  # requests' import stops part way (urllib3 is imported by then)
    try:
        import requests
    except ImportError as error:
        print("FAILED", error)
    through_urllib("asked through urllib after the failed import")
    print("RECORDED", recorder.recorded)
    del sys.modules["idna"]
    import requests

    requests.post(URL + "/chat/completions", json=chat("asked through requests on the retry"), headers=HEADERS, timeout=10)
    print("RECORDED", recorder.recorded)
'''

# The main thread's first build of the patches is held at its last import (a slow machine) until another thread has
# imported requests, or for half a second if that import waits for the build; that thread's call is made once the main
# thread's cassette is active.
IMPORTED_IN_ANOTHER_THREAD_DURING_THE_FIRST_BUILD = """
import threading

building, imported, active = threading.Event(), threading.Event(), threading.Event()


class SlowFirstBuild:
    def find_spec(self, name, path=None, target=None):
        if name == "vcr.stubs.httpx_stubs" and threading.current_thread() is threading.main_thread() and not building.is_set():
            building.set()
            imported.wait(0.5)
        return None


def other_thread():
    building.wait(10)
    import requests

    imported.set()
    active.wait(10)
    requests.post(URL + "/chat/completions", json=chat("asked from another thread"), headers=HEADERS, timeout=10)


assert "requests" not in sys.modules
sys.meta_path.insert(0, SlowFirstBuild())
thread = threading.Thread(target=other_thread)
thread.start()
with llm_replay.use_cassette(None, mode="record") as recorder:
    active.set()
    thread.join()
    print("RECORDED", recorder.recorded)
"""

# httpx imported, then dropped from sys.modules (as pytester's in-process sessions restore it) and imported again.
DROPPED_AND_IMPORTED_AGAIN = """
build_the_patches()
for round in ("first", "second"):
    with llm_replay.use_cassette(None, mode="record") as recorder:
        import httpx

        httpx.post(URL + "/chat/completions", json=chat(round + " httpx"), headers=HEADERS, timeout=10)
        print("RECORDED", recorder.recorded)
    for name in [name for name in sys.modules if name.partition(".")[0] in ("httpx", "httpcore")]:
        del sys.modules[name]
"""


def run(llm_pytester: pytest.Pytester, server, body: str, **values: str) -> pytest.RunResult:
    """``body`` after the prologue, run in a fresh interpreter."""
    script = llm_pytester.makepyfile(case=PROLOGUE.format(url=server.base_url, key=server.api_key) + body.format(**values))
    return llm_pytester.runpython(script)


def test_a_library_first_imported_under_vcrpys_own_cassette_is_recorded_by_it(llm_pytester, server):
    # vcrpy itself first used after llm_replay built its patches (a test's own vcr.use_cassette): vcrpy alone imports
    # every library it knows on `import vcr`; it crashed building its patchers (a rebuild of ours in the middle of
    # vcrpy's import of its requests stubs), or, the library imported under its cassette, did not patch it
    cassette = llm_pytester.path / "own.yaml"
    result = run(llm_pytester, server, VCRPY_CASSETTE_THEN_REQUESTS, cassette=str(cassette))
    assert result.ret == 0, result.errlines
    assert printed(result, "STATUS") == ["200"] and printed(result, "VCRPY RECORDED") == ["1"]
    stored = yaml.safe_load(cassette.read_text())["interactions"]
    assert "asked under vcrpy's own cassette" in stored[0]["request"]["body"] and len(server.requests) == 1


def test_an_import_that_fails_part_way_leaves_the_patches_on_and_a_retry_patched(llm_pytester, server):
    # the patches came off for the import and its failure stopped their rebuild (vcr.patch reloaded over the
    # half-made module): the user saw our AttributeError instead of their ImportError, and later calls went unrecorded
    result = run(llm_pytester, server, FAILED_THEN_RETRIED_IMPORT)
    assert result.ret == 0, result.errlines
    assert printed(result, "FAILED") == ["import of idna halted; None in sys.modules"]
    assert printed(result, "RECORDED") == ["1", "2"], "urllib after the failure, then requests on the retry, recorded"
    assert len(server.requests) == 2


def test_a_library_imported_in_another_thread_while_the_first_build_runs_is_patched(llm_pytester, server):
    # the import did not wait for the build (non-blocking lock, a rebuild left for the next activation): its call in
    # the active cassette went unpatched, so unrecorded, and urllib3 imported while the patches went on subclassed
    # vcrpy's stub of http.client (every rebuild after: "Cannot create a consistent method resolution order")
    result = run(llm_pytester, server, IMPORTED_IN_ANOTHER_THREAD_DURING_THE_FIRST_BUILD)
    assert result.ret == 0 and not result.errlines, result.errlines
    assert printed(result, "RECORDED") == ["1"] and len(server.requests) == 1


def test_a_library_dropped_from_sys_modules_and_imported_again_is_patched_again(llm_pytester, server):
    # only a library's first import was watched, and vcr.patch kept the classes of the module dropped since: the new
    # httpx's calls went live unpatched, so unrecorded (in replay, only the network guard stood in their way)
    result = run(llm_pytester, server, DROPPED_AND_IMPORTED_AGAIN)
    assert result.ret == 0 and not result.errlines, result.errlines
    assert printed(result, "RECORDED") == ["1", "1"] and len(server.requests) == 2
