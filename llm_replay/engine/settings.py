"""What a cassette activation is asked to do: the mode and the per-test options, parsed and checked."""

# No ``from __future__ import annotations`` here, unlike the other modules: with it, typing.NamedTuple compiles each
# field's type from its text, ~30 K instructions a field at the plugin's import (0.4 M for CacheSettings' 14).
import enum
import os
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence


class Mode(str, enum.Enum):
    """What happens on a hit and on a miss (see the modes table in README.md)."""

    REPLAY = "replay"
    RECORD = "record"
    REFRESH = "refresh"
    OFF = "off"
    ADOPT = "adopt"
    VERIFY = "verify"

    def __str__(self) -> str:
        return self.value

    @property
    def fails_on_miss(self) -> bool:
        """A miss fails the test and nothing new is recorded (replay, adopt, verify)."""
        return self in (Mode.REPLAY, Mode.ADOPT, Mode.VERIFY)

    @property
    def offline(self) -> bool:
        """Never goes live: the network is blocked (``adopt`` first re-keys a recording an SDK upgrade moved)."""
        return self in (Mode.REPLAY, Mode.ADOPT)

    @property
    def read_only(self) -> bool:
        """Whether the mode writes nothing to the cassette (replay, and verify, which only compares)."""
        return self in (Mode.REPLAY, Mode.VERIFY)


MODE_NAMES = tuple(mode.value for mode in Mode)
DEFAULT_CASSETTE = Path("cassettes") / "llm_cache.sqlite3"  # the suite cassette, under pytest's rootdir
SCOPES = ("test", "suite")
REPEATS = ("cache", "sequence")
LAYERS = ("http", "langchain")
ON_EXPIRED = ("warn", "fail", "refresh")
# The ini key of each option that has one (what pytest_plugin registers); every ini option's errors name its key.
INI_KEYS = {
    "scope": "llm_scope",
    "repeats": "llm_repeats",
    "layer": "llm_layers",
    "freeze_time": "llm_freeze_time",
    "match_ignore": "llm_match_ignore",
    "allow_hosts": "llm_allow_hosts",
    "adopt_body_paths": "llm_adopt_body_paths",
    "max_age": "llm_max_age",
    "on_expired": "llm_on_expired",
    "before_record": "llm_before_record",
    "ignore_hosts": "llm_ignore_hosts",
    "fail_unplayed": "llm_fail_unplayed",
}
INI_SOURCES = {option: f"ini option {key}" for option, key in INI_KEYS.items()}
_CHOICES = {"scope": SCOPES, "repeats": REPEATS, "on_expired": ON_EXPIRED}
_TRUE_WORDS = {"1", "true", "yes", "on", "y", "t"}
_FALSE_WORDS = {"", "0", "false", "no", "off", "n", "f"}


def parse_mode(value: str | Mode, source: str) -> Mode:
    """The Mode named by ``value``; ``source`` names where it came from, for the error."""
    if isinstance(value, Mode):
        return value
    try:
        return Mode(str(value).strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown llm_replay mode {value!r} (from {source}); "
            f"use one of: {', '.join(MODE_NAMES)}"
        ) from None


def parse_bool(value: str | bool, source: str) -> bool:
    """A yes/no setting from an ini file or the environment."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"{source} must be true or false, not {value!r}")


def parse_hosts(value: str | Sequence[str], source: str) -> tuple[str, ...]:
    """A host list option's entries: a list, tuple or set of strings, or one string (never split into its letters).
    Each string may hold several, separated by commas or spaces (``llm_allow_hosts = a.internal, b.internal`` on one
    ini line): no host has either, so such an entry matched nothing. Anything else is an error naming ``source``."""
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(entry, str) for entry in value):
        return tuple(host for entry in value for host in entry.replace(",", " ").split())
    raise ValueError(f"{source} must be a list of hosts, e.g. ['api.example.com', '*.internal:8080'] (or one host as a string), not {value!r}")


def _check_hosts(hosts: tuple[str, ...], option: str, source: str) -> tuple[str, ...]:
    """Refuse an entry that could never match, which would otherwise show up later as a blocked or a recorded call:
    a URL; in ``allow_hosts`` a port (the guard allows a host on every port) or a network that is none
    (``10.0.0.0/33``); in ``ignore_hosts`` a network (its entries are names and globs, ``10.0.0.*``)."""
    for entry in (entry.strip() for entry in hosts):
        where = f"{option} entry {entry!r} in {source}"
        if "://" in entry:
            raise ValueError(f"{where}: write a host name, not a URL (e.g. {_host_of(entry)!r})")
        if "/" in entry and option == "allow_hosts":
            _check_network(entry, where)
        elif "/" in entry:
            raise ValueError(f"{where}: a network does not match here; write names or globs, e.g. '10.0.0.*' or '*.internal:8080'")
        elif option == "allow_hosts" and (entry.count(":") == 1 or entry.startswith("[")):
            raise ValueError(f"{where}: the guard allows a host on every port; write the host alone ({_host_of(entry)!r})")
    return hosts


def _check_network(entry: str, where: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError as error:
        raise ValueError(f"{where}: not a network ({error}); write an address and a prefix length, e.g. 10.0.0.0/8 or fd00::/8") from None


def _host_of(entry: str) -> str:
    """The host of a URL or of a ``host:port`` entry, for an error's example."""
    host = entry.split("://")[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.split(":", 1)[0]


def parse_layers(value: str | Sequence[str], source: str) -> tuple[str, ...]:
    """Where llm_replay answers: ``"http"``, ``"langchain"``, or both (``"http,langchain"`` or a list)."""
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ValueError(f"{source}: expected 'http', 'langchain', 'http,langchain' or a list of them, not {value!r}")
    names = value.replace(",", " ").split() if isinstance(value, str) else [str(name).strip() for name in value]
    unknown = [name for name in names if name not in LAYERS]
    if unknown or not names:
        named = f"unknown layer {', '.join(map(repr, unknown))}" if unknown else "no layer named"
        raise ValueError(f"{source}: {named}; use one or both of: {', '.join(LAYERS)}")
    return tuple(name for name in LAYERS if name in names)


def default_mode(environ: Mapping[str, str] = os.environ) -> Mode:
    """``replay`` on CI, else ``record``, as Jest's ``--ci`` does. CI is ``CI`` set to anything but empty or a false
    word: services set ``true``, some their own name (Woodpecker: ``CI=woodpecker``), and a value not understood must
    not send a CI run to the network."""
    ci = environ.get("CI", "")
    return Mode.RECORD if ci.strip().lower() in _FALSE_WORDS else Mode.REPLAY


def session_mode(cli: str | None, ini: str | None, environ: Mapping[str, str] = os.environ) -> tuple[Mode, bool]:
    """The suite's mode by precedence CLI > env ``LLM_REPLAY_MODE`` > ini ``llm_mode`` > default.

    The flag says whether the user asked for it explicitly (CLI or env): an explicit mode also
    overrides a marker's, so ``--llm-mode=refresh`` really re-records every selected test.
    """
    if cli is not None:  # ``--llm-mode=`` is a mistake, not "no mode given"
        return parse_mode(cli, "--llm-mode"), True
    env = environ.get("LLM_REPLAY_MODE")
    if env:
        return parse_mode(env, "environment variable LLM_REPLAY_MODE"), True
    if ini:
        return parse_mode(ini, "ini option llm_mode"), False
    return default_mode(environ), False


def positional_options_error(args: Sequence[Any], source: str) -> ValueError:
    """The error for positional arguments given where only keyword options are taken (``@pytest.mark.llm_cache("test")``):
    it names ``source``, suggests the option a value belongs to (``scope="test"``) and lists the options."""
    choices = {"scope": SCOPES, "mode": MODE_NAMES, "repeats": REPEATS, "layer": LAYERS, "on_expired": ON_EXPIRED}
    meant = [next((f"{name}={arg!r}" for name, values in choices.items() if arg in values), None) for arg in args if isinstance(arg, str)]
    hint = f" (did you mean {', '.join(meant)}?)" if len(meant) == len(args) and None not in meant else ""
    given = f"argument{'s' if len(args) > 1 else ''} {', '.join(map(repr, args))}"
    return ValueError(
        f"{source} takes keyword arguments only, not the positional {given}{hint}; its options: {', '.join(sorted(_Options._fields))}"
    )


class _Options(NamedTuple):
    """CacheSettings' fields and their defaults (a NamedTuple's own ``__new__`` cannot be replaced in its body)."""

    mode: Mode = Mode.RECORD
    scope: str = "suite"
    repeats: str = "cache"
    match_ignore: tuple[str, ...] = ()
    freeze_time: bool = True
    before_fingerprint: Callable[[Any], Any] | None = None
    allow_hosts: tuple[str, ...] = ()
    # -- issue 5: the LangChain layer (llm_replay.langchain) --
    layer: tuple[str, ...] = ("http",)
    # -- issue 12: body fields an SDK upgrade may change that adopt mode still re-keys --
    adopt_body_paths: tuple[str, ...] = ()
    # -- issue 17: recordings grow old --
    max_age: float | None = None  # seconds; None: recordings never expire
    on_expired: str = "warn"
    before_record: Callable[[Any], Any] | None = None
    ignore_hosts: tuple[str, ...] = ()
    fail_unplayed: bool = False


class CacheSettings(_Options):
    """Options of one ``llm_cache`` activation, from the marker, ``llm_cache_config`` and ini.

    A checked NamedTuple, not a frozen dataclass: generating a dataclass's methods for these 14 fields cost every
    session's start-up ~5 M instructions more (~0.9 ms at the reference speed), and a test's plan is found by this
    value's hash, which a tuple works out in C."""

    __slots__ = ()

    def __new__(cls, *args: Any, **options: Any) -> "CacheSettings":
        settings = super().__new__(cls, *args, **options)
        if settings.scope not in SCOPES:
            raise ValueError(f"llm_cache scope must be one of {SCOPES}, not {settings.scope!r}")
        if settings.repeats not in REPEATS:
            raise ValueError(f"llm_cache repeats must be one of {REPEATS}, not {settings.repeats!r}")
        if settings.before_fingerprint is not None and not callable(settings.before_fingerprint):
            raise ValueError(
                f"llm_cache before_fingerprint must be a function taking and returning a CanonicalRequest, "
                f"not {settings.before_fingerprint!r}"
            )
        if settings.on_expired not in ON_EXPIRED:
            raise ValueError(f"llm_cache on_expired must be one of {ON_EXPIRED}, not {settings.on_expired!r}")
        return settings

    def updated(self, options: Mapping[str, Any], source: str | Mapping[str, str]) -> "CacheSettings":
        """A copy with ``options`` applied. Errors name where each option came from: ``source`` for all of them, or
        a mapping option -> source (the ini: each option its own key, as in ``INI_SOURCES``)."""
        if not isinstance(options, Mapping):
            raise ValueError(f"{source} must give a dict of llm_cache options, e.g. {{'scope': 'test'}}, not {options!r}")
        known = set(self._fields)
        unknown = sorted(set(options) - known, key=str)
        if unknown:
            raise ValueError(
                f"unknown llm_cache option(s) {', '.join(map(repr, unknown))} in {source if isinstance(source, str) else 'the ini file'}; "
                f"known options: {', '.join(sorted(known))}"
            )

        def where(name: str) -> str:
            return source if isinstance(source, str) else source.get(name, "the ini file")

        changes = dict(options)
        if "mode" in changes:
            changes["mode"] = parse_mode(changes["mode"], where("mode"))
        for name, choices in _CHOICES.items():
            if name in changes and changes[name] not in choices:
                raise ValueError(f"{name} in {where(name)} must be one of {', '.join(choices)}, not {changes[name]!r}")
        for name in ("match_ignore", "adopt_body_paths"):
            # Ignore rules add up (ini, then llm_cache_config, then the marker): each level only widens them.
            # None or nothing added (an ini's default) keeps them without loading the matching module and the request model.
            given = changes.get(name)
            if given is None or (not given and isinstance(given, (list, tuple, set, frozenset))):
                if name in changes:
                    changes[name] = getattr(self, name)
            else:
                from .matching import ignore_paths

                changes[name] = tuple(dict.fromkeys(getattr(self, name) + ignore_paths(given, where(name), name)))
        for name in ("allow_hosts", "ignore_hosts"):
            # Like match_ignore, host lists add up.
            if changes.get(name) is not None:
                hosts = _check_hosts(parse_hosts(changes[name], f"{name} in {where(name)}"), name, where(name))
                changes[name] = tuple(dict.fromkeys(getattr(self, name) + hosts))
            elif name in changes:
                changes[name] = getattr(self, name)
        if changes.get("max_age") not in (None, ""):
            from .age import parse_age

            changes["max_age"] = parse_age(changes["max_age"], f"max_age in {where('max_age')}")
        elif "max_age" in changes:
            changes["max_age"] = None
        if changes.get("before_record") is not None:
            from .hooks import load_hook

            changes["before_record"] = load_hook(changes["before_record"], f"before_record in {where('before_record')}")
        hook = changes.get("before_fingerprint")
        if hook is not None and not callable(hook):
            raise ValueError(
                f"before_fingerprint in {where('before_fingerprint')} must be a function taking and returning a CanonicalRequest, not {hook!r}"
            )
        for name in ("fail_unplayed", "freeze_time"):
            if name in changes:
                changes[name] = parse_bool(changes[name], f"{name} in {where(name)}")
        if "layer" in changes:
            changes["layer"] = parse_layers(changes["layer"], f"layer in {where('layer')}")
        return CacheSettings(**{**self._asdict(), **changes})  # not _replace, which skips the checks
