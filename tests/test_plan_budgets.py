"""`plan` states each eval's token budgets as a run spends them, and says once, with the setting
to change, when a dataset holds fewer tokens than SAEBench's default sparsity budget asks for."""

from __future__ import annotations

import json
import math

from conftest import TINY_SPEC, write_spec
from suite.cli import main


def _batches_held(split_file: str, ctx_len: int, batch_size: int) -> int:
    """Independently of harness.tokens: documents tokenized without special tokens, one EOS
    after each, cut into windows of ctx_len - 1 tokens (plus BOS), whole or last partial batches."""
    from transformers import AutoTokenizer

    from harness import builtin

    tokenizer = AutoTokenizer.from_pretrained(builtin.model_dir("builtin:tiny-base"))
    with open(split_file, encoding="utf-8") as lines:
        docs = [t for t in (json.loads(line)["text"] for line in lines) if t.strip()]
    tokens = sum(len(tokenizer(doc, add_special_tokens=False)["input_ids"]) + 1 for doc in docs)
    return math.ceil((tokens // (ctx_len - 1)) / batch_size)


def test_plan_counts_a_short_dataset_and_names_the_setting(tmp_path, capsys):
    from harness import builtin

    text = TINY_SPEC.format(db=tmp_path / "budget.duckdb")
    first = text.index("sparsity_tokens = 4_096")  # pyref's; pylib keeps its 4,096
    spec = write_spec(tmp_path, text[:first] + text[first:].replace("sparsity_tokens = 4_096\n", "", 1))
    held = _batches_held(builtin.corpus_files("pyref")["test"], 64, 8)
    assert main(["plan", str(spec)]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert 4_096_000 > held * 512 > 4_096  # the split is shorter than SAEBench's default, longer than pylib's budget
    assert (f"warning eval pyref: builtin:pyref:test holds about {held * 512:,} tokens ({held} batches of 8 x 64; "
            f"counted), less than its sparsity_tokens ask for") in out
    assert f"Set [eval.pyref] sparsity_tokens = {held * 512:_}" in out
    assert out.count("warning") == 1  # pylib's budgets fit its split
    assert f"pyref builtin:pyref:test 8 x 64 1,536 {held * 512:,} {held * 512:,}" in out  # what a run will use
