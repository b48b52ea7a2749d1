"""The report's sparse-probing table: per layer and labelled dataset ([probing.NAME]), SAEBench's
mean test accuracies of the probes on the model's activations and on the SAE's latents (the
stored metrics; across seeds, mean ± sd)."""

from __future__ import annotations

from suite.catalog import PROBING_K
from suite.report import ModelReport, Report
from suite.report_blocks import TableBlock, eval_rows

PROBING_NOTE = ("Sparse probing (SAEBench): mean test accuracy over a labelled dataset's one-vs-rest tasks of "
                "logistic probes on mean-pooled activations; LLM: the model's activations at the SAE's hook, "
                "all dimensions; SAE: the SAE's latents, all of them or the top k by class-mean difference.")


def probing_table(report: Report, model: ModelReport) -> TableBlock | None:
    names = report.probing_names
    if not names or not any(n in g.eval_names() for g in model.layers for n in names):
        return None
    ks = [k for k in PROBING_K if any(f"sae_top_{k}_test_accuracy" in cell.values for g in model.layers
                                       for row in g.rows for n, cell in row.evals.items() if n in names)]
    metrics = ["llm_test_accuracy", "sae_test_accuracy", *(f"sae_top_{k}_test_accuracy" for k in ks)]
    headers = ["Layer", "Dataset", "LLM", "SAE", *(f"SAE top {k}" for k in ks)]
    rows = eval_rows(report, model, names, [(metric, 3) for metric in metrics])
    return TableBlock(headers, rows, [True] * len(headers), kind="probing")
