"""pytest plugin: `pytest --sae-bench results/demo.duckdb` turns stored health gates into tests.

One item per (job, eval, gate), named like `demo::base::layer3::pyref::loss_recovered>=0.60`;
it passes or fails from the stored verdict, skips when the gate is not applicable, and xfails
when the spec allows that job to fail. Registered through the `pytest11` entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.gates import FAIL, SKIP, XFAIL, GateCheck, load_checks
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


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k / -m deselection, which then applies to ours
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    for db in config.getoption("sae_bench"):
        checks = _checks(db)
        path = Path(db).resolve()
        collector = GateDatabase.from_parent(session, name=f"sae-bench:{path.name}", path=path, checks=checks)
        items.extend(collector.collect())
