"""Every command reads at 80 and 200 columns, on a terminal and in a pipe: no line is wider than
the console, and SAE ids, model ids and gate names appear whole on one line (never folded into
slivers or cut with an ellipsis). The run's own progress in a pipe: lines while it runs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from conftest import TINY_SPEC, write_spec
from suite.cli import build_parser
from suite.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = [(80, True), (80, False), (200, True), (200, False)]
LONG_MODEL_ID = "meta-llama/Llama-2-7b-hf"


@pytest.fixture(scope="module")
def copied_run(tiny_run, tmp_path_factory):
    """The shared tiny run's results file and spec, copied: re-running them here writes runs."""
    spec, db, *_ = tiny_run
    directory = tmp_path_factory.mktemp("width")
    copy = directory / "tiny.duckdb"
    shutil.copy(db, copy)
    return write_spec(directory, spec.read_text().replace(str(db), str(copy))), copy


def _stored(db: Path) -> tuple[list[str], list[str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        saes = [r[0] for r in con.execute("select sae_id from saes order by 1").fetchall()]
        models = [r[0] for r in con.execute("select distinct model_id from saes order by 1").fetchall()]
    return saes, models


def command(argv: list[str], width: int, terminal: bool) -> tuple[int, list[str]]:
    """One command through its real function on a console of this width and kind."""
    console = Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None, record=True,
                      emoji=False)
    args = build_parser().parse_args(argv)
    code = args.func(args, console)
    return code, console.export_text().splitlines()


def assert_fits(lines: list[str], width: int, whole: list[str]) -> None:
    wide = [line for line in lines if len(line) > width]
    assert not wide, f"{len(wide)} line(s) wider than {width}: {wide[:2]}"
    for value in whole:
        assert any(value in line for line in lines), f"{value!r} not whole on any line:\n" + "\n".join(lines)


@pytest.mark.parametrize("width,terminal", LAYOUTS)
def test_plan(copied_run, width, terminal):
    spec, db = copied_run
    code, lines = command(["plan", str(spec)], width, terminal)
    saes, models = _stored(db)
    assert code == 0
    assert_fits(lines, width, saes + models)
    said = " ".join(" ".join(lines).split())
    assert "0 to train" in said and "0 to score, 6 done" in said


@pytest.mark.parametrize("width,terminal", LAYOUTS)
def test_plan_of_a_grid_with_long_model_ids(tmp_path, width, terminal):
    """The reference study's shape: hub model ids of 24 characters, nothing run yet."""
    text = TINY_SPEC.format(db=tmp_path / "none.duckdb").replace(
        'id = "builtin:tiny-base"', f'id = "{LONG_MODEL_ID}"').replace(
        'id = "builtin:tiny-finetune"', 'id = "cxllin/Llama2-7b-Finance"').replace("k = 24", "k = [16, 24]")
    spec = write_spec(tmp_path, text)
    code, lines = command(["plan", str(spec)], width, terminal)
    assert code == 0
    from suite.plan import declared_saes
    from suite.spec import load_spec

    saes = [d.ref.sae_id for d in declared_saes(load_spec(spec))]
    assert len(saes) == 12
    assert_fits(lines, width, saes + [LONG_MODEL_ID, "cxllin/Llama2-7b-Finance"])


@pytest.mark.parametrize("width,terminal", LAYOUTS)
def test_run_tables(copied_run, width, terminal):
    """A run with nothing left to do prints the final per-model tables from the store."""
    spec, db = copied_run
    code, lines = command(["run", str(spec)], width, terminal)
    _, models = _stored(db)
    assert code == 0
    assert_fits(lines, width, models + ["Absorption", "recovered"])
    assert not any("…" in line for line in lines)  # no header or value cut short


@pytest.mark.parametrize("width,terminal", LAYOUTS)
def test_gate(copied_run, width, terminal):
    spec, db = copied_run
    code, lines = command(["gate", str(db), "--all"], width, terminal)
    from suite.gates import load_checks

    names = [check.name for check in load_checks(db)]
    assert code == 0 and len(names) == 6 * 2 * 3 + 6  # 3 gates on 2 evals, one on absorption, per SAE
    assert_fits(lines, width, names)


@pytest.mark.parametrize("width,terminal", LAYOUTS)
def test_sql(copied_run, width, terminal):
    spec, db = copied_run
    query = "select sae_id, model, model_id, layer, status, checkpoint_path, settings from saes order by sae_id"
    code, lines = command(["sql", str(db), query], width, terminal)
    saes, models = _stored(db)
    with duckdb.connect(str(db), read_only=True) as con:
        paths = [r[0] for r in con.execute("select checkpoint_path from saes").fetchall()]
    assert code == 0
    assert_fits(lines, width, saes + models + ([] if terminal else paths))  # a pipe keeps long values whole too
    assert lines[-1].strip() == "6 row(s)"


@pytest.mark.parametrize("width,terminal", LAYOUTS)
def test_report_is_not_cut(copied_run, width, terminal):
    spec, db = copied_run
    code, lines = command(["report", str(db)], width, terminal)
    _, models = _stored(db)
    assert code == 0
    assert_fits(lines, width, models)


def test_piped_sql_defaults_to_plain_and_formats_are_honoured(copied_run, capsys):
    spec, db = copied_run
    query = "select sae_id, layer from saes order by sae_id"
    assert cli_main(["sql", str(db), query]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[0].split() == ["sae_id", "layer"] and not any(c in "".join(plain) for c in "┃│━")
    saes, _ = _stored(db)
    assert [line.split()[0] for line in plain[1:7]] == saes
    assert cli_main(["sql", str(db), query, "--format", "table"]) == 0
    assert "┃" in capsys.readouterr().out
    assert cli_main(["sql", str(db), query, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(saes[0] + ",")


def test_piped_run_prints_progress_lines_while_it_runs(tmp_path):
    """A piped run (as in CI) is never silent: with the interval at 0.2 s instead of 30 s, lines
    with done/total and rate arrive while the process still runs, as do the phase lines. The
    grid is scaled down with the interval: its ~5-15 s of work are 25-75 intervals here, as a
    1-4 minute run is at the default 30 s."""
    text = (TINY_SPEC.format(db=tmp_path / "progress.duckdb").replace("tokens = 12_000", "tokens = 24_000")
            .replace('models = ["base", "finetune"]', 'models = ["base"]') + "\n[absorption]\nenabled = false\n")
    spec = write_spec(tmp_path, text)
    env = {**os.environ, "SAE_BENCH_PROGRESS_SECONDS": "0.2", "COLUMNS": "80", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "suite.cli", "run", str(spec)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, text=True, cwd=tmp_path)
    while_running: list[str] = []
    after: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        (while_running if process.poll() is None else after).append(line.rstrip("\n"))
    assert process.wait() == 0, "\n".join(while_running + after)
    out = while_running + after
    timed = [line for line in while_running if "%)" in line or "ETA" in line]
    assert len(timed) >= 3, "\n".join(out)
    for phase in ("loading base: started", "training 3 SAE(s) on base, layers 0,1,2: started",
                  "scoring on pyref (base): started", "scoring on pylib (base): done"):
        assert any(phase in line for line in while_running), (phase, "\n".join(out))
    assert any("/24,000 (" in line for line in out)  # training counts its tokens
    assert all(len(line) <= 80 for line in out), [line for line in out if len(line) > 80]
    assert not any("━" in line for line in out)  # no bar frames in a pipe


def test_run_tables_put_sparse_probing_in_a_table_of_its_own(tmp_path):
    """Probing scores have none of the core columns: they get their own table (SAE and model
    top-1 and all-latent test accuracy), its numbers the means of the stored probe rows."""
    from suite.store import Store
    from suite.tables import model_tables

    db = tmp_path / "probe.duckdb"
    text = (TINY_SPEC.replace('models = ["base", "finetune"]', 'models = ["base"]').replace(
        "layers = [0, 1, 2]", "layers = [1]") + "\n[absorption]\nenabled = false\n"
        "[probing.chapters]\ndataset = {{ path = \"builtin:pyref-chapters\" }}\ntrain_size = 120\n"
        "test_size = 40\nctx_len = 64\nk = [1]\n").format(db=db)
    assert cli_main(["run", str(write_spec(tmp_path, text))]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        means = dict(con.execute("select inputs || coalesce('_top_' || k, ''), avg(accuracy) from sparse_probing "
                                 "group by all").fetchall())
        sae_ids = [r[0] for r in con.execute("select sae_id from saes").fetchall()]
    for width in (80, 200):
        console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
        for table in model_tables(Store(db), sae_ids, width):
            console.print(table)
        lines = console.export_text().splitlines()
        assert_fits(lines, width, ["base (builtin:tiny-base): sparse probing test accuracy"])
        row = next(line for line in lines if "chapters" in line).replace("│", " ").split()
        assert row == ["1", "chapters", *(f"{means[name]:.3f}" for name in ("sae_top_1", "llm_top_1", "sae", "llm"))]
        core = lines[:next(i for i, line in enumerate(lines) if "sparse probing" in line)]
        assert not any("chapters" in line for line in core) and any("pyref" in line for line in core)
