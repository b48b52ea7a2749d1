"""The results store: one DuckDB file per spec, queried directly with SQL by users.

DuckDB lets one process hold a file for writing and then no other process may open it, so the
store never keeps the file open: each write is one short transaction on a fresh connection, and
a reader (the TUI, `duckdb` CLI) can get in between writes. A write waits for a reader as long as
it takes (a reader never makes a run fail); reads use `suite.store.readonly`'s hardened
connections; `suite.store.files` decides first whether a file is ours at all.
An SAE is `done` only in the transaction that records its checkpoint; a score exists only in the
transaction that writes all its metrics, histograms and gates.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from suite.health import GatePolicy, GateResult
from suite.jobs import Job, ScoreResult, ScoreTask, TrainLogRow, TrainResult
from suite.store.errors import NewSchema, NotResultsFile, OldSchema, StoreError
from suite.store.files import identify
from suite.store.readonly import LOCK_WAIT_SECONDS, is_lock_error, read_connection
from suite.store.rows import (
    CHILD_COLUMNS,
    GATE_COLUMNS,
    KEEP_IF_NULL,
    READY_COLUMNS,
    SAE_COLUMNS,
    SCORE_COLUMNS,
    TRAIN_LOG_COLUMNS,
    delete_scores,
    gate_rows,
    insert_rows,
    ready_row,
    sae_row,
    score_rows,
    train_log_rows,
    update_rows,
)
from suite.store.schema import SCHEMA_VERSION, TABLES, views

__all__ = ["GateVerdict", "NewSchema", "NotResultsFile", "OldSchema", "Store", "StoreError", "insert_many"]

# the policy applied to one score, and its verdicts
GateVerdict = tuple[GatePolicy, list[GateResult]]
# a writer kept waiting this long by another process says so, once
WAIT_NOTICE_SECONDS = float(os.environ.get("SAE_BENCH_WAIT_NOTICE_SECONDS", 10.0))


def _now() -> datetime:
    """Naive UTC: DuckDB `timestamp` columns read back in Python without extra packages."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _holder(exc: Exception) -> str:
    """`python3 (PID 123)` from DuckDB's lock error, else a plain phrase."""
    match = re.search(r"held in (\S+) \(PID (\d+)\)", str(exc))
    return f"{Path(match.group(1)).name} (pid {match.group(2)})" if match else "another process"


class Store:
    """`lock_wait`: how long a read waits for another process's lock. `snapshot_on_lock` (readers
    such as the TUI): after that wait, read a private copy of the file instead of failing, and set
    `last_read_was_snapshot`, so a process that holds the file for long cannot freeze a reader.
    `write_wait`: how long a write waits (None: as long as it takes, so a reader holding the file
    never makes a run fail); `on_wait` hears, once per write, who it is waiting for."""

    def __init__(self, path: str | Path, lock_wait: float = LOCK_WAIT_SECONDS, snapshot_on_lock: bool = False,
                 write_wait: float | None = None, on_wait: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.lock_wait = lock_wait
        self.snapshot_on_lock = snapshot_on_lock
        self.write_wait = write_wait
        self.on_wait = on_wait
        self.last_read_was_snapshot = False
        self._held = threading.local()  # the connection of a `snapshot()` block, per thread

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only:
            try:
                with read_connection(self.path, self.lock_wait, snapshot_on_lock=self.snapshot_on_lock) as (con, copy):
                    self.last_read_was_snapshot = copy
                    yield con
            except duckdb.IOException as exc:
                if is_lock_error(exc):
                    raise StoreError(f"{self.path} is held by {_holder(exc)} for longer than {self.lock_wait:g} s; "
                                     f"try again when it is done") from None
                raise
            return
        con = self._connect_writer()
        try:
            yield con
        finally:
            con.close()

    def _connect_writer(self) -> duckdb.DuckDBPyConnection:
        started = time.monotonic()
        noticed = False
        while True:
            try:
                return duckdb.connect(str(self.path.absolute()))
            except duckdb.IOException as exc:
                if not is_lock_error(exc):
                    raise
                waited = time.monotonic() - started
                if self.write_wait is not None and waited > self.write_wait:
                    raise StoreError(f"{self.path} is held by {_holder(exc)}; could not write for "
                                     f"{self.write_wait:g} s") from None
                if not noticed and waited > WAIT_NOTICE_SECONDS and self.on_wait is not None:
                    self.on_wait(_holder(exc))
                    noticed = True
                time.sleep(0.05 + random.random() * 0.2)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            con.execute("begin transaction")
            try:
                yield con
            except BaseException:
                con.execute("rollback")
                raise
            con.execute("commit")

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self._reading() as con:
            return con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: list | None = None) -> list[dict]:
        with self._reading() as con:
            cursor = con.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    @contextmanager
    def snapshot(self) -> Iterator["Store"]:
        """Reads in this block see one state of the file: they share one read-only connection,
        so no run commits between them (a run's next write waits for the block: keep it short).
        A reader that joins rows of several queries (a report) needs this; reentrant."""
        if getattr(self._held, "con", None) is not None:
            yield self
            return
        with self._reading() as con:
            self._held.con = con
            try:
                yield self
            finally:
                self._held.con = None

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read; a file damaged past its header fails here, as one line naming it."""
        held = getattr(self._held, "con", None)
        if held is not None:
            yield held
            return
        try:
            with self._connect(read_only=True) as con:
                yield con
        except duckdb.Error as exc:  # corrupt blocks, or a file whose tables are not what they claim
            first = " ".join(str(exc).split())
            raise NotResultsFile(f"{self.path} is a damaged or unreadable DuckDB file ({first})") from None

    def init(self) -> None:
        """Create the schema in a new (or empty DuckDB) file, migrate a file of an older schema
        (after a backup), refuse one of a newer schema or one that is not a sae-bench file."""
        from suite.store.migrate import migrate

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.check_writable()
        found = self.schema_version() if self.path.exists() else None
        if found is not None and found < SCHEMA_VERSION:
            migrate(self)
            found = self.schema_version()
        with self.transaction() as con:
            if found is not None:
                self._check_version(con)
            con.execute(TABLES)
            con.execute("insert or ignore into meta values ('schema_version', ?)", [str(SCHEMA_VERSION)])
            con.execute(views())

    def schema_version(self) -> int | None:
        """The file's schema version; 1 for files from before versioning; None for an empty
        DuckDB file. NotResultsFile for anything that is not a sae-bench results file."""
        return identify(self.path, self.lock_wait, self.snapshot_on_lock).version

    def check_schema(self) -> None:
        """For readers: one clear line for a missing file, a file that is not ours, or another
        schema version."""
        found = identify(self.path, self.lock_wait, self.snapshot_on_lock)
        if found.empty:
            raise NotResultsFile(f"{self.path} is an empty DuckDB database: no sae-bench results in it yet")
        if found.version is not None and found.version < SCHEMA_VERSION:
            raise OldSchema(self.path, found.version)
        if found.version is not None and found.version > SCHEMA_VERSION:
            raise NewSchema(self.path, found.version)

    def check_writable(self) -> None:
        """For `run --db`, before anything touches the file: refuse one that is not sae-bench's
        or is of a newer schema (an older one is migrated by `init`; a missing one is created)."""
        if not self.path.exists():
            return
        found = identify(self.path, self.lock_wait)
        if found.version is not None and found.version > SCHEMA_VERSION:
            raise NewSchema(self.path, found.version)

    def _check_version(self, con: duckdb.DuckDBPyConnection) -> None:
        """Inside the writer's transaction: the file is still of this schema."""
        row = con.execute("select value from meta where key = 'schema_version'").fetchone()
        found = int(row[0]) if row and str(row[0]).isdigit() else 1
        if found < SCHEMA_VERSION:
            raise OldSchema(self.path, found)
        if found > SCHEMA_VERSION:
            raise NewSchema(self.path, found)

    # ------------------------------------------------------------------ runs

    def start_run(self, suite: str, spec_path: str, spec_toml: str, device: str, planned: int, to_train: int,
                  to_score: int, provenance: dict[str, str], executor: str | None = None) -> str:
        """`executor`: `local` or `ray`, what runs the model groups."""
        run_id = _now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        columns = ["run_id", "suite", "spec_path", "spec_toml", "started_at", "status", "device", "host",
                   "user_name", "pid", "saes_planned", "saes_to_train", "scores_to_run", "executor", *provenance]
        values = [run_id, suite, spec_path, spec_toml, _now(), "running", device, platform.node(), _user(),
                  os.getpid(), planned, to_train, to_score, executor, *provenance.values()]
        with self.transaction() as con:
            con.execute(f"insert into runs ({', '.join(columns)}) values ({', '.join('?' * len(values))})", values)
        return run_id

    def set_run_device(self, run_id: str, device_name: str | None, threads: int | None = None) -> None:
        """What ran the run's first result: the device's name and the worker's torch threads."""
        with self.transaction() as con:
            con.execute("update runs set device_name = coalesce(?, device_name), threads = coalesce(?, threads) "
                        "where run_id = ?", [device_name, threads, run_id])

    def set_wandb_url(self, sae_id: str, url: str) -> None:
        with self.transaction() as con:
            con.execute("update saes set wandb_url = ? where sae_id = ?", [url, sae_id])

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as con:
            con.execute("update runs set status = ?, finished_at = ? where run_id = ?", [status, _now(), run_id])

    # ------------------------------------------------------------------ SAEs

    def sae_states(self, keys: list[str]) -> dict[str, tuple[str, str | None]]:
        """sae_key -> (status, checkpoint_path) for the SAEs the file knows."""
        if not keys:
            return {}
        rows = self.query("select sae_key, status, checkpoint_path from saes where sae_key in (select unnest(?))",
                          [keys])
        return {key: (status, path) for key, status, path in rows}

    def score_states(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        return dict(self.query("select score_key, status from scores where score_key in (select unnest(?))", [keys]))

    def relabel(self, suite: str, labels: list[tuple[str, str, str | None]]) -> None:
        """(sae_key, model alias, label): aliases are labels, so a renamed alias updates them."""
        with self.transaction() as con:
            update_rows(con, "saes", "sae_key", ("suite", "model", "label"),
                        [(key, suite, alias, label) for key, alias, label in labels])

    def register_saes(self, run_id: str, suite: str, jobs: list[Job]) -> None:
        """Record SAEs about to be trained or imported as pending; an earlier unfinished attempt
        loses its partial rows (its scores and training curve)."""
        ids = [job.sae_id for job in jobs]
        with self.transaction() as con:
            con.execute("delete from train_log where sae_id in (select unnest(?))", [ids])
            delete_scores(con, "sae_id", ids)
            con.execute("delete from saes where sae_id in (select unnest(?))", [ids])
            insert_rows(con, "saes", SAE_COLUMNS, [sae_row(job, suite, run_id) for job in jobs])

    def mark_sae_running(self, job: Job) -> None:
        with self.transaction() as con:
            con.execute("update saes set status = 'running', started_at = ?, error = null where sae_id = ?",
                        [_now(), job.sae_id])

    def mark_sae_failed(self, job: Job, error: str, status: str = "failed") -> None:
        with self.transaction() as con:
            con.execute("update saes set status = ?, error = ?, finished_at = ? where sae_id = ?",
                        [status, error, _now(), job.sae_id])

    def sae_ready(self, job: Job, result: TrainResult) -> None:
        """The SAE's weights exist (trained and checkpointed, or imported): it is `done`."""
        self.saes_ready([(job, result)])

    def saes_ready(self, ready: list[tuple[Job, TrainResult]]) -> None:
        with self.transaction() as con:
            update_rows(con, "saes", "sae_id", ("status", "error", "finished_at", *READY_COLUMNS),
                        [(job.sae_id, "done", None, _now(), *ready_row(job, result)[1:]) for job, result in ready],
                        keep_if_null=KEEP_IF_NULL)

    def add_train_log(self, job: Job, rows: list[TrainLogRow]) -> None:
        self.add_train_logs([(job, rows)])

    def add_train_logs(self, logs: list[tuple[Job, list[TrainLogRow]]]) -> None:
        with self.transaction() as con:
            insert_rows(con, "train_log", TRAIN_LOG_COLUMNS,
                        [row for job, rows in logs for row in train_log_rows(job, rows)], replace=True)

    # ------------------------------------------------------------------ scores

    def finish_score(self, run_id: str, job: Job, task: ScoreTask, result: ScoreResult,
                     gates: GateVerdict) -> str:
        """Score row, metrics, notes, histogram, letters and gates land together or not at all."""
        return self.finish_scores(run_id, [(job, task, result, gates)])[0]

    def finish_scores(self, run_id: str, finished: list[tuple[Job, ScoreTask, ScoreResult, GateVerdict]]) -> list[str]:
        """Many finished scores in one transaction (a synthetic store, a bulk import)."""
        tables: dict[str, list] = {"scores": [], "gates": [], **{t: [] for t in CHILD_COLUMNS}}
        now = _now()
        for job, task, result, (policy, verdicts) in finished:
            for table, rows in score_rows(run_id, job, task, result, now).items():
                tables[table].extend(rows)
            tables["gates"].extend(gate_rows(task.key(job.key)[:12], policy, verdicts))
        with self.transaction() as con:
            delete_scores(con, "score_key", [row[1] for row in tables["scores"]])
            insert_rows(con, "scores", SCORE_COLUMNS, tables["scores"])
            for table, columns in CHILD_COLUMNS.items():
                insert_rows(con, table, columns, tables[table])
            insert_rows(con, "gates", GATE_COLUMNS, tables["gates"], replace=True)
        return [row[0] for row in tables["scores"]]

    def fail_score(self, run_id: str, job: Job, task: ScoreTask, error: str) -> None:
        key = task.key(job.key)
        with self.transaction() as con:
            delete_scores(con, "score_key", [key])
            con.execute(
                """insert into scores (score_id, score_key, sae_id, eval_name, eval_kind, eval_dataset, eval_settings,
                   metric_version, status, error, run_id, finished_at)
                   values (?, ?, ?, ?, ?, ?, ?, ?, 'failed', ?, ?, ?)""",
                [key[:12], key, job.sae_id, task.name, task.kind, task.dataset_label,
                 json.dumps(task.identity(), default=str), task.identity()["metric_version"], error, run_id, _now()])

    def current_scores(self, sae_ids: list[str]) -> list[dict]:
        """The current score of each (SAE, eval) among `sae_ids`, with its metrics and notes."""
        if not sae_ids:
            return []
        scores = self.query_dicts("select score_id, sae_id, eval_name from current_scores "
                                  "where sae_id in (select unnest(?))", [sae_ids])
        ids = [s["score_id"] for s in scores]
        values: dict[str, dict[str, float]] = {}
        for score_id, metric, value in self.query(
                "select score_id, metric, value from metrics where score_id in (select unnest(?))", [ids]):
            values.setdefault(score_id, {})[metric] = value
        notes: dict[str, dict[str, str]] = {}
        for score_id, metric, reason in self.query(
                "select score_id, metric, reason from metric_notes where score_id in (select unnest(?))", [ids]):
            notes.setdefault(score_id, {})[metric] = reason
        return [{**s, "metrics": values.get(s["score_id"], {}), "notes": notes.get(s["score_id"], {})}
                for s in scores]

    def replace_gates(self, score_id: str, gates: GateVerdict) -> None:
        """Re-gate a score (thresholds changed in the spec); its metrics stay as they are."""
        self.replace_many_gates([(score_id, gates)])

    def replace_many_gates(self, regated: list[tuple[str, GateVerdict]]) -> None:
        with self.transaction() as con:
            con.execute("delete from gates where score_id in (select unnest(?))", [[s for s, _ in regated]])
            insert_rows(con, "gates", GATE_COLUMNS,
                        [row for score_id, (policy, verdicts) in regated
                         for row in gate_rows(score_id, policy, verdicts)], replace=True)


def insert_many(con: duckdb.DuckDBPyConnection, sql: str, rows: list) -> None:
    if rows:  # DuckDB refuses an empty parameter list
        con.executemany(sql, rows)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return ""
