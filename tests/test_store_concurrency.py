"""One run writing, readers in a loop: `report` (JSON) and `sql` read the file over and over
while a real `sae-bench run` process trains and scores into it. The run finishes with nothing
lost, no reader fails, and every read sees a consistent snapshot: a score is there with all its
metrics and gates or not at all, an SAE is `done` only with its checkpoint and curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from hardening_fixtures import mini_spec
from suite.cli import main
from suite.store.lock import writer_active

ROOT = Path(__file__).resolve().parents[1]

# One statement, so one snapshot: how many rows break the store's invariants.
BROKEN = """
select
  (select count(*) from scores s where s.status = 'done'
     and not exists (select 1 from metrics m where m.score_id = s.score_id)) as scores_without_metrics,
  (select count(*) from scores s where s.status = 'done' and s.eval_kind = 'core'
     and (select count(*) from gates g where g.score_id = s.score_id) <> 3) as core_scores_without_their_3_gates,
  (select count(*) from metrics m where not exists (select 1 from scores s where s.score_id = m.score_id))
     as orphan_metrics,
  (select count(*) from saes a where a.status = 'done'
     and (a.checkpoint_path is null or not exists (select 1 from train_log t where t.sae_id = a.sae_id)))
     as done_saes_without_checkpoint_or_curve,
  (select count(*) from scores) as scores,
  (select count(*) from saes where status = 'done') as saes_done
"""


def read_sql(db: Path, capsys) -> dict:
    code = main(["sql", str(db), BROKEN, "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    (row,) = json.loads(out)
    return row


def test_readers_in_a_loop_never_fail_and_see_consistent_snapshots(tmp_path, capsys):
    spec = mini_spec(tmp_path, layers="[0, 1]", tokens=8192)
    db = tmp_path / "mini.duckdb"
    run = subprocess.Popen([sys.executable, "-m", "suite.cli", "run", str(spec)], cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"})
    reads: list[dict] = []
    reports = 0
    try:
        deadline = time.monotonic() + 240
        while not (db.exists() and writer_active(db)) and run.poll() is None:
            assert time.monotonic() < deadline, "the run never took the file"
            time.sleep(0.05)
        while run.poll() is None:
            assert time.monotonic() < deadline, "the run did not finish"
            row = read_sql(db, capsys)
            reads.append(row)
            assert {k: v for k, v in row.items() if k not in ("scores", "saes_done")} == {
                "scores_without_metrics": 0, "core_scores_without_their_3_gates": 0, "orphan_metrics": 0,
                "done_saes_without_checkpoint_or_curve": 0}, row
            report = tmp_path / "report.json"
            code = main(["report", str(db), "--format", "json", "-o", str(report)])
            out = capsys.readouterr().out
            assert code == 0, out
            json.loads(report.read_text())  # a whole document, never half a file
            reports += 1
        output = run.stdout.read()
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()
    assert run.returncode == 0, output
    # the readers really ran during the run, and saw it progress
    assert len(reads) >= 3 and reports >= 3
    assert [r["scores"] for r in reads] == sorted(r["scores"] for r in reads)
    # nothing lost: every SAE done, every score stored, exactly what a quiet run stores
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*), count(*) filter (where status = 'done') from saes").fetchall() == [(2, 2)]
        assert con.execute("select count(*), count(*) filter (where status = 'done') from scores").fetchall() == [
            (2, 2)]
        assert con.execute("select status from runs").fetchall() == [("finished",)]
    final = read_sql(db, capsys)
    assert final["saes_done"] == 2 and final["scores"] == 2 and final["scores_without_metrics"] == 0
    assert "2 SAE(s) trained or imported, 2 score(s) computed" in " ".join(output.split())
