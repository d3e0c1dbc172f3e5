"""FACE: the pytest plugin (``plugin.py`` is wiring only), the session, and how a run ends."""

import sys


def _load_without_assertion_rewriting() -> None:
    """pytest marks a plugin's whole package for assertion rewriting, and then loads each of its modules through its
    own importer, which reads the cached code object by object and hashes the source again: ~2-3 M instructions a
    module, ~100 M in a replay session that loads the engine (~18 ms at the reference speed). llm_replay asserts
    nothing a test would read, so from here on its modules load the ordinary way; this package and the few modules
    the package imports first still go through pytest's importer. Nothing changes when pytest's importer is laid
    out otherwise."""
    package = __name__.split(".", 1)[0]
    for finder in sys.meta_path:
        marked, cache = getattr(finder, "_must_rewrite", None), getattr(finder, "_marked_for_rewrite_cache", None)
        if type(finder).__name__ == "AssertionRewritingHook" and isinstance(marked, set) and isinstance(cache, dict):
            marked.discard(package)
            cache.clear()


_load_without_assertion_rewriting()
