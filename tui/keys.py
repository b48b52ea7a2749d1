"""Every key of every screen, read from the screens' own bindings (so the help cannot drift)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingsMap
from textual.dom import DOMNode
from textual.keys import format_key

# what the mouse does, per screen (no binding to read it from)
MOUSE = {"layers": [("click header", "sort by that column, again to reverse")],
         "compare": [("click header", "sort the deltas by that column")]}


@dataclass
class KeyHelp:
    keys: str
    description: str


def bindings(cls: type[DOMNode]) -> list[Binding]:
    """The class's bindings after inheritance: a subclass's binding for a key replaces its base's."""
    merged: dict[str, Binding] = {}
    for base in reversed(cls.__mro__):
        if isinstance(base, type) and issubclass(base, DOMNode) and "BINDINGS" in base.__dict__:
            for key, key_bindings in BindingsMap(base.__dict__["BINDINGS"]).key_to_bindings.items():
                merged[key] = key_bindings[-1]
    return list(merged.values())


READABLE = {"enter": "enter", "question_mark": "?"}  # format_key writes enter as a symbol


def key_display(binding: Binding) -> str:
    return binding.key_display or READABLE.get(binding.key) or format_key(binding.key)


def describe(cls: type[DOMNode], skip: type[DOMNode] | None = None) -> list[KeyHelp]:
    """One line per action, its keys joined (`escape,q` -> `esc / q`); bindings `skip` has
    (the same key for the same action) are left to that class's section."""
    skipped = {(b.key, b.action) for b in bindings(skip)} if skip is not None else set()
    lines: dict[tuple[str, str], list[str]] = {}
    for binding in bindings(cls):
        if (binding.key, binding.action) in skipped:
            continue
        text = binding.description or binding.action.replace("_", " ")
        lines.setdefault((binding.action, text), []).append(key_display(binding))
    return [KeyHelp(" / ".join(keys), text) for (_, text), keys in lines.items()]
