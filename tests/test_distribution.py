"""Our distribution has a name of its own (`sae-bench-suite`; the command stays `sae-bench`), so
SAEBench's PyPI package `sae-bench` (module `sae_bench`) installs beside us: one environment,
both import, and neither install removes the other."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from suite.cli import main
from suite.provenance import DISTRIBUTION, package_version

ROOT = Path(__file__).resolve().parents[1]
SAEBENCH = "sae-bench==0.6.0"
OFFLINE = ("NewConnectionError", "Failed to establish", "Temporary failure in name resolution", "Network is unreachable",
           "ConnectTimeout", "timed out", "No matching distribution found", "Could not find a version",
           "ProxyError", "SSLError")


def test_version_flag_names_the_distribution(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert DISTRIBUTION == "sae-bench-suite"
    installed = package_version(DISTRIBUTION)
    assert out.startswith(f"sae-bench {installed or '(version unknown)'} (")
    assert "sae-bench-suite" in out


def test_pyproject_name_is_not_saebenchs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "sae-bench"
    assert project["scripts"] == {"sae-bench": "suite.cli:main"}


def test_saebench_installs_beside_us(tmp_path):
    """A throwaway venv that sees this environment's packages (ours and our dependencies) gets
    SAEBench's wheel, without its dependencies (seconds, not its 3 GB of requirements); then both
    import there, and each name resolves to its own distribution. Skipped when PyPI is out of reach."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    inner = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip())
    outer = sysconfig.get_paths()["purelib"]  # this environment's site-packages, its .pth files processed too
    (inner / "outer-environment.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": str(ROOT)}
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--timeout", "15", "--retries", "1", SAEBENCH],
                             capture_output=True, text=True, env=env)
    if install.returncode != 0:
        text = install.stdout + install.stderr
        if any(marker in text for marker in OFFLINE):
            pytest.skip(f"PyPI is out of reach, {SAEBENCH} not installed: {text.strip().splitlines()[-1]}")
        pytest.fail(text)
    check = textwrap.dedent(f"""
        import importlib.metadata as md
        import sae_bench, suite, suite.cli
        assert sae_bench.__file__.startswith({str(inner)!r}), sae_bench.__file__
        assert md.version("sae-bench") == "0.6.0"
        assert md.version("{DISTRIBUTION}")
        names = [d.metadata["Name"] for d in md.distributions()]
        saebench = [d for d in md.distributions() if d.metadata["Name"] == "sae-bench"]
        assert all(d.version == "0.6.0" for d in saebench), [d.version for d in saebench]  # none is ours
        print("ok", md.version("sae-bench"), md.version("{DISTRIBUTION}"))
    """)
    run = subprocess.run([str(python), "-c", check], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok 0.6.0 ")
