"""How the TUI writes ids, health verdicts and layer labels (shared by the screens)."""

from __future__ import annotations

import hashlib
import re

from suite.report import LayerRow
from suite.seeds import SEED_POSITION

HEALTH_STYLES = {"healthy": "bold green", "partial": "bold yellow", "unhealthy": "bold red"}
RUN_STATUS_STYLES = {"finished": "green", "running": "yellow", "failed": "red", "interrupted": "red"}
# the settings a layer label names when the grid varies them (LayerRow.settings_key order)
SETTING_NAMES = ("hook", "arch", "k", "n", "lr", "batch", "ctx", "tokens", "seed", "data")


def widget_id(name: str) -> str:
    """A Textual id for a spec name (`[/bold]`, `llama.v2` are valid aliases, not valid ids)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        return name
    return "x" + hashlib.sha1(name.encode()).hexdigest()[:12]


def health_class(passed: int, total: int) -> str:
    """green: all gates pass; yellow: at least half; red: most failed."""
    if passed == total:
        return "healthy"
    return "partial" if 2 * passed >= total else "unhealthy"


def varying_settings(rows: list[LayerRow]) -> list[int]:
    """Positions in `settings_key` whose value differs between trained rows: the grid's axes
    (the seed is not one: seeds of a layer are aggregated into one row)."""
    keys = [r.settings_key for r in rows if r.settings_key[0] != "imported"]
    if len(keys) < 2:
        return []
    return [i for i in range(len(keys[0])) if i != SEED_POSITION and len({k[i] for k in keys}) > 1]


def layer_label(row: LayerRow, axes: list[int]) -> str:
    """`6`, or `6 k=16 lr=0.001` naming only the settings the grid varies (fits 80 columns where
    the report's full `(topk k=16 n=1024 lr=0.001)` does not)."""
    if row.label_text or row.settings_key[0] == "imported":
        return row.label(False)
    hook = f" {row.hook}" if row.hook != "resid_post" else ""
    parts = []
    for i in axes:
        if SETTING_NAMES[i] == "hook":
            continue
        value = row.settings_key[i]
        parts.append(f"{SETTING_NAMES[i]}={value:g}" if isinstance(value, float) else f"{SETTING_NAMES[i]}={value}")
    return " ".join([f"{row.layer}{hook}", *parts])
