"""`run --threads`: the count torch runs with, stored with the run; the documented default."""

from __future__ import annotations

import pytest
import torch

from harness.threads import default_threads, use_threads
from suite.cli import main
from hardening_fixtures import mini_spec, rows


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, want", [(1, 1), (2, 1), (3, 2), (64, 63)])
def test_default_leaves_one_core_to_the_rest(cores, want):
    assert default_threads(cores) == want


def test_omp_num_threads_wins_over_the_default(monkeypatch, keep_threads):
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr("harness.threads.available_cores", lambda: 8)
    assert use_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert use_threads() == 7  # no variable: cores - 1
    assert use_threads(2) == 2  # an explicit count wins over both


def test_run_threads_is_used_and_stored(tmp_path, keep_threads):
    spec = mini_spec(tmp_path)
    assert main(["run", str(spec), "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    assert rows(tmp_path / "mini.duckdb", "select threads from runs") == [(2,)]


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_thread_counts_are_refused(tmp_path, capsys, value):
    spec = mini_spec(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(spec), "--threads", value])
    assert exit_info.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "mini.duckdb").exists()
