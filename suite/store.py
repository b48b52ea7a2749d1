"""The results store: one DuckDB file per spec, queried directly with SQL by users.

DuckDB lets one process hold a file for writing and then no other process may open it, so the
store never keeps the file open: each write is one short transaction on a fresh connection, and
a reader (the TUI, `duckdb` CLI) can get in between writes. A held lock is retried for a while.
A job is `done` only in the transaction that also writes all its metrics and gates.
"""

from __future__ import annotations

import getpass
import json
import platform
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from suite.catalog import INTERVAL_METRICS, METRIC_NAMES
from suite.health import GatePolicy, GateResult
from suite.jobs import Job, JobResult, TrainLogRow

LOCK_WAIT_SECONDS = 60.0
SCHEMA_VERSION = 2  # bump on any change to the tables below


class StoreError(RuntimeError):
    pass


SCHEMA = """
create table if not exists meta (key varchar primary key, value varchar);
create table if not exists runs (
    run_id varchar primary key,
    suite varchar not null,
    spec_path varchar,
    spec_toml varchar,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,          -- running | finished | failed | interrupted
    device varchar,
    host varchar,
    user_name varchar,
    jobs_planned integer,
    jobs_skipped integer
);
create table if not exists jobs (
    job_id varchar primary key,       -- first 12 hex digits of job_key
    job_key varchar unique not null,  -- sha256 of the normalised settings
    run_id varchar not null,          -- the run that last (re)started it
    suite varchar not null,
    model varchar not null,           -- the spec's alias, e.g. base
    model_id varchar not null,        -- hub id, path or builtin:NAME
    layer integer not null,
    arch varchar not null,
    k integer not null,
    latents integer not null,
    lr double not null,
    batch_size integer not null,
    ctx_len integer not null,
    train_tokens bigint not null,
    seed integer not null,
    train_dataset varchar not null,
    settings json not null,
    status varchar not null,          -- pending | running | done | failed
    error varchar,
    started_at timestamp,
    finished_at timestamp,
    train_seconds double,
    tokens_per_second double,
    checkpoint_path varchar
);
create table if not exists metrics (
    job_id varchar not null,
    eval_name varchar not null,
    metric varchar not null,
    value double,
    ci_low double,                    -- 95% bootstrap interval over eval sequences, where known
    ci_high double,
    primary key (job_id, eval_name, metric)
);
create table if not exists metric_notes (
    job_id varchar not null,
    eval_name varchar not null,
    metric varchar not null,
    reason varchar not null,          -- why this metric has no value
    primary key (job_id, eval_name, metric)
);
create table if not exists train_log (
    job_id varchar not null,
    step integer not null,
    tokens bigint not null,
    loss double,
    fvu double,
    l0 double,
    dead_fraction double,
    primary key (job_id, step)
);
create table if not exists gates (
    job_id varchar not null,
    eval_name varchar not null,
    metric varchar not null,
    op varchar not null,              -- '>=' | '<=' | 'between'
    threshold_min double,
    threshold_max double,
    value double,
    passed boolean,                   -- null: not applicable (see reason)
    reason varchar,
    allowed_to_fail boolean not null default false,  -- the spec tolerates this job's failures
    primary key (job_id, eval_name, metric)
);
"""


def _views() -> str:
    pivot = ",\n    ".join(
        f"max(m.value) filter (where m.metric = '{name}') as {name}" for name in METRIC_NAMES
    )
    bounds = ",\n    ".join(
        f"max(m.ci_{side}) filter (where m.metric = '{name}') as {name}_ci_{side}"
        for name in INTERVAL_METRICS for side in ("low", "high")
    )
    return f"""
create or replace view health as
select j.job_id, j.suite, j.model, j.model_id, j.layer, j.arch, j.k, j.latents, g.eval_name,
    count(*) filter (where g.passed) as gates_passed,
    count(*) filter (where g.passed is not null) as gates_total,
    count(*) filter (where g.passed is null) as gates_not_applicable,
    list(g.metric order by g.metric) filter (where g.passed = false) as failed_gates,
    bool_or(g.allowed_to_fail) as allowed_to_fail
from jobs j join gates g using (job_id)
where j.status = 'done'
group by all;

create or replace view layer_summary as
select j.job_id, j.suite, j.model, j.model_id, j.layer, j.arch, j.k, j.latents, j.lr, m.eval_name,
    {pivot},
    {bounds}
from jobs j join metrics m using (job_id)
where j.status = 'done'
group by all;
"""


def _now() -> datetime:
    """Naive UTC: DuckDB `timestamp` columns read back in Python without extra packages."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower()


class Store:
    """`lock_wait`: how long to wait for another process's lock. `snapshot_on_lock` (readers such
    as the TUI): after that wait, read a private copy of the file instead of failing, and set
    `last_read_was_snapshot`, so a process that holds the file for long cannot freeze a reader."""

    def __init__(self, path: str | Path, lock_wait: float = LOCK_WAIT_SECONDS, snapshot_on_lock: bool = False):
        self.path = Path(path)
        self.lock_wait = lock_wait
        self.snapshot_on_lock = snapshot_on_lock
        self.last_read_was_snapshot = False

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_wait
        snapshot_dir = None
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() > deadline:
                    if not (read_only and self.snapshot_on_lock):
                        raise
                    snapshot_dir, con = self._snapshot()
                    break
                time.sleep(0.05 + random.random() * 0.2)
        if read_only:
            self.last_read_was_snapshot = snapshot_dir is not None
        try:
            yield con
        finally:
            con.close()
            if snapshot_dir is not None:
                shutil.rmtree(snapshot_dir, ignore_errors=True)

    def _snapshot(self) -> tuple[Path, duckdb.DuckDBPyConnection]:
        """Copy the file (and its WAL) aside and open the copy: what the writer had committed."""
        directory = Path(tempfile.mkdtemp(prefix="sae-bench-snapshot-"))
        copy = directory / self.path.name
        shutil.copy2(self.path, copy)
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.exists():
            shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
        return directory, duckdb.connect(str(copy))

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
        with self._connect(read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: list | None = None) -> list[dict]:
        with self._connect(read_only=True) as con:
            cursor = con.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def init(self) -> None:
        """Create the schema in a new file; refuse a file written with another schema version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.transaction() as con:
            has_tables = con.execute(
                "select count(*) from information_schema.tables where table_name = 'jobs'").fetchone()[0]
            if has_tables:
                self._check_version(con)
            con.execute(SCHEMA)
            con.execute("insert or ignore into meta values ('schema_version', ?)", [str(SCHEMA_VERSION)])
            con.execute(_views())

    def check_schema(self) -> None:
        """For readers: a clear error for a missing file or another schema version."""
        if not self.path.is_file():
            raise StoreError(f"no results database at {self.path}")
        with self._connect(read_only=True) as con:
            self._check_version(con)

    def _check_version(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            row = con.execute("select value from meta where key = 'schema_version'").fetchone()
        except duckdb.CatalogException:
            row = None
        found = row[0] if row else "1 (before versioning)"
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"{self.path} was written with results schema version {found}; this sae-bench uses "
                f"version {SCHEMA_VERSION}. Run into a new file (--db) or move the old one aside.")

    # ------------------------------------------------------------------ runs

    def start_run(self, suite: str, spec_path: str, spec_toml: str, device: str,
                  planned: int, skipped: int) -> str:
        run_id = _now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        with self.transaction() as con:
            con.execute(
                "insert into runs values (?, ?, ?, ?, ?, null, 'running', ?, ?, ?, ?, ?)",
                [run_id, suite, spec_path, spec_toml, _now(), device, platform.node(), getpass.getuser(),
                 planned, skipped],
            )
        return run_id

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as con:
            con.execute("update runs set status = ?, finished_at = ? where run_id = ?", [status, _now(), run_id])

    # ------------------------------------------------------------------ jobs

    def job_status(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        rows = self.query("select job_key, status from jobs where job_key in (select unnest(?))", [keys])
        return dict(rows)

    def prepare_jobs(self, run_id: str, suite: str, jobs: list[Job]) -> None:
        """Register jobs as pending; an earlier unfinished attempt loses its partial rows."""
        with self.transaction() as con:
            for job in jobs:
                for table in ("metrics", "metric_notes", "train_log", "gates"):
                    con.execute(f"delete from {table} where job_id = ?", [job.job_id])
                con.execute("delete from jobs where job_id = ?", [job.job_id])
                t, s = job.train, job.sae
                con.execute(
                    """insert into jobs (job_id, job_key, run_id, suite, model, model_id, layer, arch, k,
                       latents, lr, batch_size, ctx_len, train_tokens, seed, train_dataset, settings, status)
                       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')""",
                    [job.job_id, job.key, run_id, suite, job.model.name, job.model.id, job.layer, s.arch, s.k,
                     s.latents, t.lr, t.batch_size, t.ctx_len, t.tokens, t.seed, t.dataset.label(),
                     json.dumps(job.identity(), default=str)],
                )

    def mark_running(self, job: Job) -> None:
        with self.transaction() as con:
            con.execute("update jobs set status = 'running', started_at = ?, error = null where job_id = ?",
                        [_now(), job.job_id])

    def add_train_log(self, job: Job, rows: list[TrainLogRow]) -> None:
        with self.transaction() as con:
            con.executemany(
                "insert or replace into train_log values (?, ?, ?, ?, ?, ?, ?)",
                [[job.job_id, *asdict(r).values()] for r in rows],
            )

    def mark_failed(self, job: Job, error: str) -> None:
        with self.transaction() as con:
            con.execute("update jobs set status = 'failed', error = ?, finished_at = ? where job_id = ?",
                        [error, _now(), job.job_id])

    def finish_job(self, job: Job, result: JobResult, gates: GateVerdicts) -> None:
        """Metrics, notes, gates and the `done` status land together or not at all."""
        with self.transaction() as con:
            for eval_name, values in result.metrics.items():
                bounds = result.intervals.get(eval_name, {})
                con.executemany(
                    "insert or replace into metrics values (?, ?, ?, ?, ?, ?)",
                    [[job.job_id, eval_name, metric, value, *bounds.get(metric, (None, None))]
                     for metric, value in values.items()],
                )
                for metric, reason in result.notes.items():
                    con.execute("insert or replace into metric_notes values (?, ?, ?, ?)",
                                [job.job_id, eval_name, metric, reason])
            _write_gates(con, job.job_id, gates)
            con.execute(
                """update jobs set status = 'done', finished_at = ?, train_seconds = ?, tokens_per_second = ?,
                   checkpoint_path = ?, error = null where job_id = ?""",
                [_now(), result.train_seconds, result.tokens_per_second, result.checkpoint_path, job.job_id],
            )

    def stored_metrics(self, job_id: str) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]:
        """(eval -> metric -> value, eval -> metric -> reason it has none) of a job."""
        values: dict[str, dict[str, float]] = {}
        for eval_name, metric, value in self.query(
                "select eval_name, metric, value from metrics where job_id = ?", [job_id]):
            values.setdefault(eval_name, {})[metric] = value
        notes: dict[str, dict[str, str]] = {}
        for eval_name, metric, reason in self.query(
                "select eval_name, metric, reason from metric_notes where job_id = ?", [job_id]):
            notes.setdefault(eval_name, {})[metric] = reason
        return values, notes

    def replace_gates(self, job: Job, gates: GateVerdicts) -> None:
        """Re-gate a finished job (thresholds changed in the spec); metrics stay as they are."""
        with self.transaction() as con:
            con.execute("delete from gates where job_id = ?", [job.job_id])
            _write_gates(con, job.job_id, gates)


# eval name -> (the policy applied, its verdicts)
GateVerdicts = dict[str, tuple[GatePolicy, list[GateResult]]]


def _write_gates(con: duckdb.DuckDBPyConnection, job_id: str, gates: GateVerdicts) -> None:
    for eval_name, (policy, verdicts) in gates.items():
        con.executemany(
            "insert or replace into gates values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[job_id, eval_name, g.threshold.metric, g.threshold.op, g.threshold.min, g.threshold.max,
              g.value, g.passed, g.reason or None, policy.allow_fail] for g in verdicts],
        )
