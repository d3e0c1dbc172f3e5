"""User hooks named in ini files as ``package.module:function`` and given to the engine as functions."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Iterator

from ..errors import CassetteError
from ..model.interaction import Interaction

BeforeRecord = Callable[[Interaction], "Interaction | None"]


def load_hook(spec: str | Callable[..., Any], source: str) -> Callable[..., Any]:
    """The function ``spec`` names (``package.module:function``), or ``spec`` itself when it is one already."""
    if callable(spec):
        return spec
    module_name, _, attribute = str(spec).strip().partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{source}: {spec!r} does not name a function; write it as package.module:function")
    try:
        found = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{source}: cannot load {spec!r} ({error}); is the module importable from the project's root?") from None
    if not callable(found):
        raise ValueError(f"{source}: {spec!r} is not a function")
    return found


def shaped(hook: BeforeRecord | None, interaction: Interaction) -> Interaction | None:
    """What ``before_record`` makes of one interaction about to be written: it, changed, or None (not written)."""
    if hook is None:
        return interaction
    name = getattr(hook, "__qualname__", repr(hook))
    try:
        result = hook(interaction)
    except Exception as error:
        raise CassetteError(f"before_record hook {name} failed on {interaction.request.method} {interaction.request.url}: {error!r}") from error
    if result is not None and not isinstance(result, Interaction):
        raise CassetteError(
            f"before_record hook {name} returned {type(result).__name__}; "
            "return the interaction (changed with dataclasses.replace, if you like) or None to leave it unrecorded"
        )
    return result


def all_shaped(hook: BeforeRecord | None, interactions: Iterable[Interaction]) -> Iterator[Interaction]:
    """``shaped`` over many interactions (imports, copies), leaving out those the hook drops."""
    for interaction in interactions:
        kept = shaped(hook, interaction)
        if kept is not None:
            yield kept
