"""harness.progress.LineProgress: what a pipe or CI log gets instead of bars."""

from __future__ import annotations

import io
import time

from rich.console import Console

from harness.progress import INTERVAL_ENV, LineProgress, make_progress, progress_interval


def _console(width: int = 80, terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=terminal, color_system=None), out


def _wait_for(out: io.StringIO, text: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while text not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.02)


def test_phases_and_timed_lines():
    console, out = _console()
    with LineProgress(console, interval=0.05) as progress:
        loading = progress.add_task("loading base", total=1)
        _wait_for(out, "loading base: working")  # a step without a count says it is still working
        progress.update(loading, completed=1)
        training = progress.add_task("training 2 SAE(s) on base, layers 1,3", total=4_000)
        progress.update(training, completed=1_000)
        _wait_for(out, "1,000/4,000 (25%)")
        progress.update(training, completed=4_000)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("] loading base: started") and lines[0].startswith("[0:00:0")
    assert any(line.endswith("loading base: done in 0:00:00") for line in lines)
    assert any(line.endswith("training 2 SAE(s) on base, layers 1,3: started (4,000 to do)") for line in lines)
    said = " ".join(out.getvalue().split())
    assert said.count("layers 1,3: done, 4,000 in 0:00:0") == 1 and said.endswith("/s")
    assert all(len(line) <= 80 for line in lines)


def test_a_long_line_puts_its_numbers_on_a_second_line():
    console, out = _console(width=60)
    with LineProgress(console, interval=0.05) as progress:
        task = progress.add_task("training 6 SAE(s) on finetune, layers 4,10", total=20_000_000)
        progress.update(task, completed=5_000_000)
        _wait_for(out, "5,000,000/20,000,000 (25%)")
    lines = out.getvalue().splitlines()
    numbers = next(i for i, line in enumerate(lines) if "5,000,000/20,000,000 (25%)" in line)
    assert lines[numbers - 1].endswith("layers 4,10:") and lines[numbers].startswith(" " * 10)
    assert all(len(line) <= 60 for line in lines)


def test_ended_phases_are_not_repeated_and_the_newest_is_the_one_named():
    console, out = _console()
    with LineProgress(console, interval=0.05, sequential=False) as progress:
        short = progress.add_task("[1] scoring on pyref (base)", total=8)
        progress.update(short, completed=6)  # the dataset ran out at 6 of 8
        progress.end(short)
        other = progress.add_task("[2] scoring on pylib (base)", total=8)
        progress.update(other, completed=2)
        _wait_for(out, "[2] scoring on pylib (base): 2/8 (25%)")
    assert "6/8" not in out.getvalue()
    console, out = _console()
    with LineProgress(console, interval=0.05) as progress:  # sequential: only the newest unfinished phase
        progress.update(progress.add_task("scoring on pyref (base)", total=8), completed=6)
        progress.update(progress.add_task("scoring on pylib (base)", total=8), completed=3)
        _wait_for(out, "scoring on pylib (base): 3/8 (38%)")
    assert "6/8" not in out.getvalue()


def test_bars_on_a_terminal_lines_elsewhere(monkeypatch):
    from rich.progress import Progress

    terminal, _ = _console(terminal=True)
    pipe, _ = _console()
    bars = Progress(console=terminal)
    assert make_progress(terminal, bars) is bars
    assert isinstance(make_progress(pipe, Progress(console=pipe)), LineProgress)
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval() == 2.5 and LineProgress(pipe).interval == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    assert progress_interval() == 30.0
    monkeypatch.delenv(INTERVAL_ENV)
    assert progress_interval() == 30.0


def test_terminal_bars_fit_80_columns_with_whole_numbers():
    """On a terminal the bars shrink, not the counts or the times (they were cut to `0:00:…`)."""
    from harness.engine import _progress

    for width in (80, 200):
        console, out = _console(width=width, terminal=True)
        progress = _progress(console)
        task = progress.add_task("training 3 SAE(s) on finetune, layers 0,1,2", total=12_000)
        progress.update(task, completed=6_000)
        progress.add_task("absorption: train prompts (finetune)", total=580)
        console.print(progress.make_tasks_table(progress.tasks))
        lines = out.getvalue().splitlines()
        assert len(lines) == 2 and all(len(line) <= width for line in lines) and "…" not in out.getvalue()
        assert "training 3 SAE(s) on finetune, layers 0,1,2" in lines[0] and "6,000/12,000" in lines[0]
        assert "━" in lines[0] and "0/580" in lines[1]
