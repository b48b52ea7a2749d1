"""Number formats shared by every report renderer and the TUI, so all print the same digits."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from suite.seeds import Spread


def sql_cell(value: object) -> str:
    """A query result value as shown by `sae-bench sql` and the TUI's SQL console."""
    if value is None:
        return "NULL"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def pct(value: float | None) -> str:
    return "n/a" if _missing(value) else f"{100 * value:.2f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if _missing(value) else f"{value:.{digits}f}"


def signed(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}"


def points(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{100 * (b - a):+.2f} pts"



def pct_spread(spread: Spread | None) -> str:
    """An across-seed mean as a percentage, ± the sample standard deviation in points."""
    if spread is None:
        return "n/a"
    std = spread.std
    return f"{100 * spread.mean:.2f}%" + (f" ±{100 * std:.2f}" if std is not None else "")


def num_spread(spread: Spread | None, digits: int = 2) -> str:
    if spread is None:
        return "n/a"
    std = spread.std
    return f"{spread.mean:.{digits}f}" + (f" ±{std:.{digits}f}" if std is not None else "")
