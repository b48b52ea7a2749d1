"""What a new user meets first: `--help` of the command and of each subcommand says what it
does (and the exit codes), and mistakes found trying the product end in one line and exit 2."""

from __future__ import annotations

import pytest

from suite.cli import build_parser, main


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_top_level_help_describes_the_tool_and_its_exit_codes(capsys):
    text = _help([], capsys)
    assert "sparse autoencoders" in text and "DuckDB" in text
    assert "registering its" not in text  # not a cut docstring line
    assert "exit codes: 0 success; 1" in text and "2 invalid spec" in text and "130 stopped" in text


def test_every_subcommand_help_says_what_it_does(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0]
    said = {action.dest: action.help for action in commands._choices_actions}
    assert set(said) == set(commands.choices) and len(said) >= 9
    for name, summary in said.items():
        text = _help([name], capsys)
        assert f"usage: sae-bench {name}" in text
        assert " ".join(summary.split()) in text, name


def test_report_compare_refuses_one_model_twice(tiny_run, capsys):
    _, db, *_ = tiny_run
    assert main(["report", str(db), "--compare", "base", "base"]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "--compare base base: name two different models" in out


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_directory_given_as_the_spec_is_named_as_such(tmp_path, capsys, command):
    assert main([command, str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "a directory, not a spec file" in out


@pytest.mark.parametrize("value,path", [('"topkk"', "sae.arch:"), ('["topk", "topkk"]', "sae.arch[1]:")])
def test_a_bad_axis_value_is_named_as_written(tmp_path, capsys, value, path):
    """An axis given as one value is named without an index (`sae.arch`, as written), one in a
    list with its index."""
    from conftest import TINY_SPEC, write_spec

    text = TINY_SPEC.format(db=tmp_path / "x.duckdb").replace("[sae]\n", f"[sae]\narch = {value}\n")
    assert main(["validate", str(write_spec(tmp_path, text))]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"{path} expected one of 'topk'" in out


def test_run_tables_list_failed_saes_beside_the_done_ones(tmp_path, capsys, monkeypatch):
    """A diverging lr fails its SAEs: `run`'s final tables still show every SAE of the run, the
    done ones with their stored numbers and the failed ones with their status and stored error
    (at 80 columns, where these tables are records)."""
    import duckdb
    from hardening_fixtures import mini_spec

    monkeypatch.setenv("COLUMNS", "80")

    spec = mini_spec(tmp_path, layers="[0, 1]", lr="[1e-3, 1e6]")
    assert main(["run", str(spec)]) == 1
    out = capsys.readouterr().out
    tables = out[out.index("base (builtin:tiny-base)"):]
    with duckdb.connect(str(tmp_path / "mini.duckdb"), read_only=True) as con:
        saes = con.execute("select sae_id, status, error, loss_recovered from saes left join layer_summary "
                           "using (sae_id) order by sae_id").fetchall()
    assert sorted(status for _, status, _, _ in saes) == ["done", "done", "failed", "failed"]
    for sae_id, status, error, recovered in saes:
        block = tables[tables.index(f"SAE:            {sae_id}" if status == "done" else f"SAE:      {sae_id}"):]
        block = block[:block.find("\n\n")] if "\n\n" in block else block
        if status == "done":
            assert f"Loss recovered: {100 * recovered:.2f}%" in block
        else:
            assert "Eval:     failed" in block and error.split()[0] in block
