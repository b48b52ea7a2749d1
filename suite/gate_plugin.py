"""pytest plugin: `pytest --sae-bench results/demo.duckdb` turns stored health gates into tests.

One item per (SAE, eval, gate), its node id the file's name then the check's name, e.g.
`demo.duckdb::demo::base::layer3::pyref::loss_recovered` (suite.gates), so `-k "layer3 and
pyref"` or `-k loss_recovered` select gates; it passes or fails from the stored verdict, skips
when the gate is not applicable, and xfails when the spec allows that SAE to fail. With
`--sae-bench` and no test paths on the command line, only the results files' gates are
collected (not the `testpaths` or the current directory: run from a repository root, a project's
own tests would otherwise run too). The terminal summary ends with each file's
`n/N layers healthy` as `sae-bench gate` counts it (seeds aggregated, `suite.seeds`; every
layer of the file, whatever `-k` selects). Registered through the `pytest11` entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.gates import FAIL, SKIP, XFAIL, GateCheck, layer_verdicts, load_checks
from suite.store import Store


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sae-bench")
    group.addoption("--sae-bench", action="append", default=[], metavar="DB",
                    help="collect the health gates stored in this sae-bench DuckDB file as tests")


class GateFailure(AssertionError):
    pass


class GateItem(pytest.Item):
    def __init__(self, *, check: GateCheck, **kwargs):
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        if self.check.outcome == SKIP:
            pytest.skip(self.check.message)
        if self.check.outcome == XFAIL:
            pytest.xfail(self.check.message)
        if self.check.outcome == FAIL:
            raise GateFailure(self.check.message)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GateFailure):
            return f"unhealthy SAE: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.name


class GateDatabase(pytest.Collector):
    def __init__(self, *, checks: list[GateCheck], **kwargs):
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self):
        for check in self.checks:
            yield GateItem.from_parent(self, name=check.name, check=check)


def _checks(db: str) -> list[GateCheck]:
    """The file's checks, or one usage error line (exit 4) for a file that is not a readable
    sae-bench results file; a killed run's rows are reconciled first, as `gate` does."""
    from suite.store import StoreError
    from suite.store.recovery import reconcile_if_idle

    try:
        Store(db).check_schema()
        reconcile_if_idle(db)
        return load_checks(db)
    except StoreError as exc:
        raise pytest.UsageError(f"--sae-bench: {exc}") from None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Test files are collected with `--sae-bench` only when named on the command line."""
    if config.getoption("sae_bench") and config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k / -m deselection, which then applies to ours
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    for db in config.getoption("sae_bench"):
        checks = _checks(db)
        path = Path(db).resolve()
        collector = GateDatabase.from_parent(session, name=path.name, path=path, nodeid=path.name, checks=checks)
        collected = list(collector.collect())
        # reported as collected, so the header counts them (`collected N items / M deselected`)
        config.hook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, collected))
        items.extend(collected)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line per results file: its layers' verdicts, a seed axis counted once per layer."""
    from suite.store import StoreError

    for db in config.getoption("sae_bench"):
        try:
            verdicts = layer_verdicts(db)
        except StoreError:  # already reported as a usage error at collection
            continue
        terminalreporter.write_line(f"sae-bench {Path(db).name}: {verdicts.line()}")
