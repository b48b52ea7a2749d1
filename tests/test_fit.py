"""suite.fit: tables fit the width or become records; whole values are never cut or folded."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from suite.fit import Col, fit_table, plain_table, records

COLS = [Col("sae", whole=True), Col("model id", whole=True), Col("layer", whole=True, justify="right"),
        Col("status", whole=True), Col("note")]
ROWS = [["3f9a2c41be07", "meta-llama/Llama-2-7b-hf", "16", "interrupted",
         "the run was stopped before this SAE finished; run the spec again to resume"],
        ["a0b1c2d3e4f5", "cxllin/Llama2-7b-Finance", "4", "done", ""]]


def render(renderable, width: int, terminal: bool) -> str:
    console = Console(width=width, file=io.StringIO(), force_terminal=terminal, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_whole_values_survive_every_width(width, terminal):
    text = render(fit_table(COLS, ROWS, width, title="a title"), width, terminal)
    assert max(len(line) for line in text.splitlines()) <= width
    for row in ROWS:
        for value in row[:4]:
            assert any(value in line for line in text.splitlines()), (value, text)


def test_wide_enough_is_one_boxed_table_and_narrow_is_records():
    wide = render(fit_table(COLS, ROWS, 200), 200, True)
    assert wide.splitlines()[0].startswith("┏") and wide.count("\n") == 6  # top, header, rule, 2 rows, bottom
    narrow = render(fit_table(COLS, ROWS, 40), 40, True)
    lines = narrow.splitlines()
    assert "sae:      3f9a2c41be07" in lines[0]  # field names padded to the longest shown one ("model id:")
    assert lines[1].startswith("model id: meta-llama/Llama-2-7b-hf")
    assert "" in [line.strip() for line in lines]  # a blank line between the blocks
    assert not any(line.startswith("note:") for line in lines[lines.index("") + 1:] if line)  # empty: left out


def test_middle_width_wraps_the_free_text_column_only():
    # whole columns need 12 + 24 + 5 + 11 cells; the note (natural 74) must wrap to fit 100
    text = render(fit_table(COLS, ROWS, 100), 100, True)
    assert "┃ sae" in text and "3f9a2c41be07" in text
    assert "the run was stopped before this SAE finished; run the spec again to resume" not in text
    assert "resume" in text


def test_headers_wrap_at_spaces_never_inside_a_word():
    cols = [Col("sae", whole=True), Col("Loss recovered", justify="right"), Col("Absorption", justify="right")]
    rows = [["3f9a2c41be07", "93.40%", "0.012"]]
    text = render(fit_table(cols, rows, 40), 40, True)
    assert "recovered" in text and "Absorption" in text and "…" not in text


def test_plain_table_keeps_values_whole_or_gives_records():
    plain = render(plain_table(COLS, ROWS, 200), 200, False)
    assert ROWS[0][4] in plain and "┃" not in plain and "│" not in plain
    assert render(plain_table(COLS, ROWS, 80), 80, False) == render(records(COLS, ROWS), 80, False)


def test_markup_in_cells_is_literal_and_styles_kept():
    rows = [["[red]x[/red]", Text("styled", style="green"), "1", "done", ":train:"]]
    text = render(fit_table(COLS, rows, 200), 200, True)
    assert "[red]x[/red]" in text and ":train:" in text and "styled" in text
