"""vcrpy's patches without importing every HTTP library vcrpy knows: one the session has not imported yet is
patched when it is imported.

Importing ``vcr.patch`` imports each library it can patch (botocore, urllib3, requests, httpx, aiohttp, tornado…)
to keep their originals: with boto3 and requests installed, ~150 ms of a session's first llm_cache test for
libraries its tests may never load. It is imported with the absent ones withheld (in its own thread only), and a
finder first on ``sys.meta_path`` watches for them. While one is imported, the patches are off (its classes subclass
the real ``http.client`` ones, as they would without llm_replay); once the outermost such import has finished (a
package that imports another is whole), vcrpy's module is loaded again to keep its originals, and the patches are
rebuilt and put back on, before the importing code can use it. So a library that a test body imports after llm_cache
started is intercepted as if it had been imported first, and so is one dropped from ``sys.modules`` and imported again.
A thread that imports one while another thread is changing the patches (the very first llm_cache test starting) waits
for it first. Once vcrpy's own cassettes load (a test uses vcrpy itself), every library still withheld is imported, as
``import vcr`` alone would.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
# The top-level packages of the modules vcr.patch imports to keep their originals (vcrpy 9.4).
PATCHED_LIBRARIES = ("botocore", "urllib3", "requests", "httplib2", "tornado", "aiohttp", "httpx", "httpx_curl_cffi", "pyreqwest", "httpx2")
# vcrpy's own cassettes (a test's vcr.use_cassette, vcr.VCR): they need every library vcrpy knows already imported.
VCRPY_CASSETTES = "vcr.cassette"


class _Watch(MetaPathFinder):
    """Withholds the libraries vcrpy has not kept while its module loads, and reports each import of one later: the
    first, and any after its module was dropped from ``sys.modules`` (pytester's in-process sessions restore it) or
    reloaded, whose classes vcrpy has not kept either."""

    def __init__(self, importing: Callable[[], None], imported: Callable[[], None]) -> None:
        self.watched = {*PATCHED_LIBRARIES, VCRPY_CASSETTES}  # only asked about when not in sys.modules, or reloaded
        self.importing = importing
        self.imported = imported
        self.withholding_thread: int | None = None
        self._depth = threading.local()  # how many watched imports this thread is inside

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in self.watched:  # every fresh import of the session passes here: one set look-up
            return None
        if fullname == VCRPY_CASSETTES:
            self.release_withheld()
            return None  # loaded by the finders after this one
        if self.withholding_thread == threading.get_ident():
            raise ModuleNotFoundError(f"{fullname} is withheld while vcr.patch loads (llm_replay patches it once imported)", name=fullname)
        spec = self._found_elsewhere(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenReport(spec.loader, self)
        return spec

    def _found_elsewhere(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None) -> ModuleSpec | None:
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is not self and find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    return spec
        return None

    def entering(self) -> None:
        """A watched import starts; the outermost one first takes the patches off (``importing``)."""
        depth = getattr(self._depth, "value", 0)
        if depth == 0:
            self.importing()
        self._depth.value = depth + 1

    def left(self) -> None:
        """A watched import ended; once the outermost has, vcrpy keeps what was imported (``imported``)."""
        self._depth.value -= 1
        if self._depth.value == 0:
            self.imported()

    def release_withheld(self) -> None:
        """vcrpy's own cassettes are loading (a test uses vcrpy itself): they patch what ``vcr.patch`` keeps, so every
        installed library still withheld is imported now, as ``import vcr`` alone does, and kept in one rebuild. Else one
        first imported under such a cassette is not patched by it, and one that vcrpy's stubs import while its cassette
        builds its patchers set off a rebuild of ours in the middle of that import."""
        self.watched.discard(VCRPY_CASSETTES)
        self.entering()
        try:
            for name in PATCHED_LIBRARIES:
                with contextlib.suppress(ImportError):  # not installed: vcr.patch skips it as well
                    importlib.import_module(name)
        finally:
            self.left()

    def load_withholding(self, load: Callable[[], T]) -> T:
        """``load()`` with the libraries still absent unimportable in this thread."""
        self.withholding_thread = threading.get_ident()
        try:
            return load()
        finally:
            self.withholding_thread = None


class _ThenReport(Loader):
    """A library's own loader, then the report that it is imported; the module keeps its own loader afterwards."""

    def __init__(self, loader: Loader, watch: _Watch) -> None:
        self.loader = loader
        self.watch = watch

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.watch.entering()
        try:
            self.loader.exec_module(module)
        except BaseException:
            # importlib drops a module whose body failed once this returns: dropped now, so that the rebuild (vcr.patch
            # loaded again) finds it absent, not half made
            if sys.modules.get(module.__name__) is module:
                del sys.modules[module.__name__]
            raise
        finally:
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
            self.watch.left()

    def __getattr__(self, name: str) -> Any:  # resource readers, get_source…
        return getattr(self.loader, name)


_WATCH: _Watch | None = None


def watch_late_imports(importing: Callable[[], None], imported: Callable[[], None]) -> None:
    """From now on, the HTTP libraries this process has not imported are withheld from vcrpy (``withholding``), and
    an import of one of them is framed by ``importing`` (take the patches off: a library whose classes subclass
    ``http.client``'s must find the real ones, not vcrpy's stubs) and ``imported`` (``keep_originals_again``, then
    rebuild the patches and put them back on). Once only, and only before ``vcr.patch`` is imported: imported already
    (pytest-recording, a conftest), it has imported every library it knows."""
    global _WATCH
    if _WATCH is not None or "vcr.patch" in sys.modules:
        return
    _WATCH = _Watch(importing, imported)
    sys.meta_path.insert(0, _WATCH)


def defer_vcr_package_init() -> None:
    """vcrpy's package without its ``__init__`` until a name is asked of it (PEP 562's module ``__getattr__``).

    The patches need ``vcr.patch`` and ``vcr.stubs`` alone; the package's ``__init__`` loads its cassettes' machinery
    (config, cassette, matchers, persisters, PyYAML, wrapt: ~120 M instructions, ~30 ms), which llm_replay's replay
    never uses. ``import vcr`` then ``vcr.VCR`` or ``vcr.use_cassette`` (a test's own vcrpy, YAML import) runs it then.
    Imported already (pytest-recording, a conftest), vcrpy is left as it is."""
    if "vcr" in sys.modules:
        return
    spec = importlib.util.find_spec("vcr")
    if spec is None or spec.loader is None:  # not installed: importing vcr.patch says so
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def finish_init(name: str) -> Any:
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = finish_init  # type: ignore[attr-defined]
    sys.modules["vcr"] = package


def withholding(build: Callable[[], T]) -> T:
    """``build()`` (importing vcr.patch, building its patchers) with the libraries still absent unimportable in this
    thread: vcrpy skips each one as if it were not installed."""
    return build() if _WATCH is None else _WATCH.load_withholding(build)


def keep_originals_again() -> None:
    """Load ``vcr.patch`` again, so it keeps the originals of the libraries imported since, the others still withheld.

    Only with every patch of ours off. What it kept before wins over what it finds now (were another vcrpy cassette's
    patches on at this moment, it would otherwise keep them as originals), unless it came from a library whose module
    has been replaced since (dropped from ``sys.modules``, imported again): that library's, and the vcrpy stubs built
    on it, are forgotten, so its new classes are kept and patched."""
    module = sys.modules.get("vcr.patch")
    if module is None:  # dropped since (pytester's in-process sessions restore sys.modules): imported afresh
        withholding(lambda: importlib.import_module("vcr.patch"))
        return
    namespace = vars(module)
    replaced = {value.__name__.partition(".")[0] for value in namespace.values() if _replaced(value)}
    if replaced:
        _forget_kept_from(replaced)
    kept = {name: value for name, value in namespace.items() if value is not None and not name.startswith("__")}
    withholding(lambda: importlib.reload(module))
    namespace.update(kept)


def _replaced(value: object) -> bool:
    """A module that ``sys.modules`` no longer holds (dropped, or imported again as another module object)."""
    return isinstance(value, ModuleType) and sys.modules.get(value.__name__) is not value


def _forget_kept_from(packages: set[str]) -> None:
    """What vcr.patch kept of ``packages`` (libraries replaced since), and vcrpy's stub modules built on them."""
    kept = vars(sys.modules["vcr.patch"])
    for name in [name for name, value in kept.items() if _package_of(value) in packages]:
        del kept[name]
    for name in [name for name in list(sys.modules) if name.startswith("vcr.stubs.")]:
        stubs = sys.modules.get(name)
        if isinstance(stubs, ModuleType) and any(_package_of(value) in packages for value in vars(stubs).values()):
            del sys.modules[name]  # imported afresh by the next build
            vars(sys.modules["vcr.stubs"]).pop(name.rpartition(".")[2], None)


def _package_of(value: object) -> str:
    """The top-level package a module, class or function comes from ("" when it says none)."""
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
    return name.partition(".")[0] if isinstance(name, str) else ""
