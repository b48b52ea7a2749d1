"""[probing.NAME] in the spec: validation with field paths, settings and score keys, gates."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.grid import score_tasks
from suite.jobs import ProbingSettings, ScoreTask
from suite.spec import SpecError, parse_spec

DEMO = (Path(__file__).resolve().parents[1] / "specs" / "demo.toml").read_text()
MINIMAL = '\n[probing.bios]\ndataset = { path = "LabHC/bias_in_bios", split = "train" }\n' \
          'text_column = "hard_text"\nlabel_column = "profession"\nclasses = ["0", "1", "2", "6", "9"]\n'


def _spec(extra: str):
    return parse_spec(DEMO + extra, "demo.toml")


@pytest.mark.parametrize("extra, problem", [
    ('\n[probing.x]\ndataset = { path = "a" }\nk = [3]\n', "probing.x.k: 3 not among SAEBench's k values"),
    ('\n[probing.x]\ndataset = { path = "a" }\nk = [1, 1]\n', "probing.x.k: values must not repeat"),
    ('\n[probing.x]\ndataset = { pth = "a" }\n', "probing.x.dataset.pth: unknown key"),
    ('\n[probing.x]\ndataset = { path = "a" }\nclasses = ["a"]\n', "probing.x.classes: one-vs-rest tasks need at least 2"),
    ('\n[probing.x]\ndataset = { path = "a" }\ntest_size = 1\n', "probing.x.test_size: expected a value >= 2"),
    ('\n[probing.x]\ndataset = { path = "a" }\nlabel_colum = "y"\n', "probing.x.label_colum: unknown key"),
    ('\n[probing.pyref]\ndataset = { path = "a" }\n', "probing.pyref: the name is already used by [eval.pyref]"),
    ('\n[probing.absorption]\ndataset = { path = "a" }\n', "the name is already used by the absorption eval"),
    ('\n[probing.x]\ndataset = { path = "builtin:pyref-chapters" }\ntrain_size = 200\ntest_size = 50\n',
     "probing.chapters, probing.x have the same settings"),
])
def test_bad_probing_sections_name_the_field(extra, problem):
    with pytest.raises(SpecError) as error:
        _spec(extra)
    assert problem in str(error.value)


def test_settings_default_to_saebenchs_and_key_ignores_the_name():
    tasks = {t.name: t for t in score_tasks(_spec(MINIMAL))}
    bios = tasks["bios"]
    assert bios.kind == "sparse_probing" and isinstance(bios.settings, ProbingSettings)
    s = bios.settings
    assert (s.dataset.path, s.dataset.split, s.dataset.column, s.test_split) == (
        "LabHC/bias_in_bios", "train", "hard_text", "test")
    assert (s.label_column, s.classes, s.k) == ("profession", ("0", "1", "2", "6", "9"), (1, 2, 5))
    # SAEBench's eval_config.py / main.py defaults
    assert (s.train_size, s.test_size, s.ctx_len, s.seed) == (4000, 1000, 128, 42)
    assert (s.probe_epochs, s.probe_lr, s.probe_batch_size, s.probe_patience) == (100, 1e-2, 250, 10)
    renamed = ScoreTask("sparse_probing", ProbingSettings("other", s.dataset, **{
        f: getattr(s, f) for f in s.__dataclass_fields__ if f not in ("name", "dataset")}))
    assert renamed.key("sae") == bios.key("sae")
    assert ScoreTask("sparse_probing", ProbingSettings("bios", s.dataset, k=(1,))).key("sae") != bios.key("sae")
    assert {"chapters", "areas"} <= set(tasks) and tasks["chapters"].settings.dataset.path == "builtin:pyref-chapters"


def test_probing_gates_live_on_probing_scores_only():
    from suite.jobs import Job
    from suite.runner import gate

    spec = _spec('\n[health]\nsae_top_1_test_accuracy = { min = 0.7 }\n')
    declared = score_tasks(spec)
    job = Job(__import__("suite.grid", fromlist=["trained_saes"]).trained_saes(spec)[0].ref, train=False,
              scores=declared)
    metrics = {"sae_top_1_test_accuracy": 0.65, "loss_recovered": 0.9, "l0": 30, "dead_fraction": 0.0}
    _, probing = gate(spec, job, "chapters", metrics, {})
    assert [(g.threshold.metric, g.passed) for g in probing] == [("sae_top_1_test_accuracy", False)]
    _, core = gate(spec, job, "pyref", metrics, {})
    assert "sae_top_1_test_accuracy" not in {g.threshold.metric for g in core} and len(core) == 3
    # off by default
    _, default = gate(_spec(""), job, "chapters", metrics, {})
    assert default == []
