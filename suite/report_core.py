"""The report's core-metrics table: per layer and eval, the reconstruction and KL metrics the
layer table has no room for (stored values; across seeds, mean ± sd), so Markdown and HTML show
every core number JSON holds for the usual questions."""

from __future__ import annotations

from suite.report import ModelReport, Report
from suite.report_blocks import TableBlock, eval_rows

CORE_COLUMNS = (  # (metric, header, digits)
    ("kl_score", "KL score", 3),
    ("explained_variance", "Expl. var.", 3),
    ("cossim", "Cos sim", 3),
    ("mse", "MSE", 4),
    ("l2_ratio", "L2 ratio", 3),
    ("l1", "L1", 2),
)
CORE_NOTE = ("Reconstruction and KL per eval: KL score (KL_zero − KL_sae) / KL_zero; explained variance "
             "1 − FVU; cosine similarity and L2 ratio of the reconstruction x_hat to x; MSE per dimension; L1 of the latents.")


def core_table(report: Report, model: ModelReport) -> TableBlock | None:
    evals = report.eval_names
    present = [c for c in CORE_COLUMNS if any(c[0] in row.evals[e].values for row in model.rows for e in evals
                                              if e in row.evals)]
    if not present:
        return None
    headers = ["Layer", "Eval", *(header for _, header, _ in present)]
    rows = eval_rows(report, model, evals, [(metric, digits) for metric, _, digits in present])
    return TableBlock(headers, rows, [True] * len(headers), kind="core", model=model.name)
