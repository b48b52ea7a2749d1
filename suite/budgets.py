"""Each dataset eval's token budgets as a run will actually use them, for `sae-bench plan`.

A budget is spent in whole batches of `batch_size` windows of `ctx_len` tokens, from the
stream's start: CE/KL on the first `tokens`, density and reconstruction on the first
`sparsity_tokens` (SAEBench's default 4,096,000 is more than many eval splits hold). What a
dataset holds is known without running anything when

- the results file holds an earlier score of the eval that ran out (its stored warning says after
  how many batches), or
- the dataset is local (a file or a built-in corpus) and the model's tokenizer is on disk: its
  windows are counted, up to the budget.

Otherwise it is "not known before the first run" and the run says it once if it runs short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from suite.jobs import EvalSettings, ModelRef
from suite.store import Store

_RAN_OUT = re.compile(r"ended after (\d+) of (\d+) batches of (\d+) x (\d+) tokens")


@dataclass(frozen=True)
class EvalBudget:
    settings: EvalSettings
    available_batches: int | None  # whole batches the dataset holds (None: not known yet)
    source: str  # how it is known: "counted" | "an earlier run" | ""

    @property
    def ce_batches(self) -> int:
        return self._capped(self.settings.batches(self.settings.tokens))

    @property
    def sparsity_batches(self) -> int:
        return self._capped(self.settings.batches(self.settings.sparsity_tokens))

    def _capped(self, batches: int) -> int:
        return batches if self.available_batches is None else min(batches, self.available_batches)

    @property
    def wanted_batches(self) -> int:
        return max(self.settings.batches(self.settings.tokens), self.settings.batches(self.settings.sparsity_tokens))

    @property
    def enough(self) -> bool:
        """Counting went past what the budgets need (it stops there)."""
        return self.available_batches is not None and self.available_batches > self.wanted_batches

    @property
    def short(self) -> bool:
        """The dataset holds fewer batches than one of the budgets asks for."""
        return self.available_batches is not None and self.available_batches < self.wanted_batches

    def advice(self) -> str:
        """One line naming the setting to change, for a dataset shorter than the budgets."""
        s = self.settings
        held = (self.available_batches or 0) * s.batch_tokens
        fields = [name for name, tokens in (("tokens", s.tokens), ("sparsity_tokens", s.sparsity_tokens))
                  if s.batches(tokens) > (self.available_batches or 0)]
        settings = " and ".join(f"{name} = {held:_}" for name in fields)
        return (f"eval {s.name}: {s.dataset.label()} holds about {held:,} tokens ({self.available_batches} batches of "
                f"{s.batch_size} x {s.ctx_len}; {self.source}), less than its {' and '.join(fields)} ask for; the scores "
                f"use what it holds. Set [eval.{s.name}] {settings} (or choose a larger split) to say so in the spec.")


def _from_history(store: Store | None, ev: EvalSettings) -> int | None:
    if store is None:
        return None
    rows = store.query_dicts("select warning from scores where eval_name = ? and eval_dataset = ? and warning is not "
                             "null order by finished_at desc limit 1", [ev.name, ev.dataset.label()])
    match = _RAN_OUT.search(rows[0]["warning"]) if rows else None
    if match is None or (int(match[3]), int(match[4])) != (ev.batch_size, ev.ctx_len):
        return None
    return int(match[1])


def _local_tokenizer(model: ModelRef):
    """The model's tokenizer if it is on disk (a built built-in model, a local path, the HF
    cache); None rather than building or downloading anything."""
    from harness import builtin

    try:
        from transformers import AutoTokenizer

        if builtin.is_builtin(model.id):
            path = builtin.built_dir(model.id)
            return AutoTokenizer.from_pretrained(path) if path is not None else None
        return AutoTokenizer.from_pretrained(model.id, revision=model.revision, local_files_only=True,
                                             trust_remote_code=model.trust_remote_code)
    except Exception:
        return None


def _is_local(ev: EvalSettings) -> bool:
    from harness import builtin

    path = ev.dataset.path
    return builtin.is_builtin(path) or Path(path).exists() or bool(ev.dataset.data_files)


def _counted(model: ModelRef, ev: EvalSettings) -> int | None:
    if not _is_local(ev):
        return None
    tokenizer = _local_tokenizer(model)
    if tokenizer is None:
        return None
    from harness.tokens import iter_windows

    wanted = max(ev.batches(ev.tokens), ev.batches(ev.sparsity_tokens))
    windows = iter_windows(ev.dataset, tokenizer, ev.ctx_len, ev.batch_size)
    count = 0
    try:
        for _ in windows:
            count += 1
            if count > wanted:  # one more than needed: enough
                break
    except Exception:
        return None
    finally:
        windows.close()
    return count


def eval_budgets(evals: list[EvalSettings], models: list[ModelRef], store: Store | None
                 ) -> list[EvalBudget]:
    """Per dataset eval: what it asks for and, where it can be known now, what the dataset holds
    (the fewest batches over the grid's models, whose tokenizers may differ)."""
    budgets = []
    for ev in evals:
        held = _from_history(store, ev)
        source = "an earlier run ran out there" if held is not None else ""
        if held is None:
            counts = [c for model in models if (c := _counted(model, ev)) is not None]
            if counts:
                held, source = min(counts), "counted"
        budgets.append(EvalBudget(ev, held, source))
    return budgets
