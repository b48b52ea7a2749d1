"""The app's read access to a results file.

Every refresh reads inside one `session()` (`Store.snapshot`): all its queries share one
read-only connection, so a refresh sees one committed state of the file even while a run writes
it (the writer's short transactions land between refreshes, never between the queries of one).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from suite.report import Report, load_report
from suite.store import Store

# a reader waits this long for a writer's transaction, then reads a private snapshot copy
LOCK_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class Verdict:
    eval_name: str
    metric: str
    passed: bool | None  # None: the gate does not apply (reason says why)
    reason: str | None


@dataclass
class SaeScores:
    values: dict[str, dict[str, float]]  # eval name -> metric -> stored value
    gates: list[Verdict]
    kinds: dict[str, str]  # eval name -> core | absorption | sparse_probing


class StoreView:
    """What the screens read; each method is one consistent read (see `PinnedStore`)."""

    def __init__(self, path: Path):
        self.store = Store(path, lock_wait=LOCK_WAIT_SECONDS, snapshot_on_lock=True)

    @property
    def path(self) -> Path:
        return self.store.path

    def session(self) -> AbstractContextManager[Store]:
        """Reads inside share one read-only connection (`Store.snapshot`, per thread)."""
        return self.store.snapshot()

    def report(self) -> Report:
        with self.session():
            return load_report(self.store)

    def runs(self) -> list[dict]:
        return self.store.query_dicts("""
            select r.run_id, r.suite, r.started_at, r.status, r.saes_planned, r.saes_to_train, r.scores_to_run,
                   count(a.sae_id) filter (where a.status = 'done') as done,
                   count(a.sae_id) filter (where a.status = 'failed') as failed
            from runs r left join saes a using (run_id) group by all order by r.started_at desc, r.run_id""")

    def sae(self, sae_id: str) -> dict | None:
        rows = self.store.query_dicts("select * from saes where sae_id = ?", [sae_id])
        return rows[0] if rows else None

    def scores(self, sae_id: str) -> SaeScores:
        """One SAE's current metrics per eval and its gate verdicts (without building the report)."""
        scores = SaeScores({}, [], {})
        for eval_name, metric, value in self.store.query(
                "select c.eval_name, m.metric, m.value from current_scores c join metrics m using (score_id) "
                "where c.sae_id = ?", [sae_id]):
            scores.values.setdefault(eval_name, {})[metric] = value
        for eval_name, kind in self.store.query("select eval_name, eval_kind from current_scores where sae_id = ?",
                                                [sae_id]):
            scores.values.setdefault(eval_name, {})
            scores.kinds[eval_name] = kind
        scores.gates = [Verdict(*row) for row in self.store.query(
            "select c.eval_name, g.metric, g.passed, g.reason from current_scores c join gates g using (score_id) "
            "where c.sae_id = ? order by g.metric", [sae_id])]
        return scores

    def train_log(self, sae_id: str) -> list[dict]:
        return self.store.query_dicts("select * from train_log where sae_id = ? order by step", [sae_id])

    @property
    def source(self) -> str:
        return "snapshot (another process holds the file)" if self.store.last_read_was_snapshot else "live"
