"""The report as one self-contained HTML page: the same tables as Markdown (verdict colours on
layer rows), then inline SVG charts. No scripts, no external assets (fit to attach to a pull
request or mail); every piece of user text is escaped."""

from __future__ import annotations

import re
from html import escape

from suite.report import Report
from suite.report_blocks import Block, Bullets, Heading, Paragraph, TableBlock, report_blocks
from suite.report_charts import Chart, all_charts
from suite.report_compare import Comparison
from suite.store import Store

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1200px;
padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}h2{font-size:1.3em;margin-top:1.6em;
border-bottom:1px solid #d0d7de;padding-bottom:.2em}h3{font-size:1.1em}
code{background:#f6f8fa;padding:.1em .3em;border-radius:4px;font-size:.92em}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{white-space:nowrap}tr.healthy td.health{background:#dafbe1}tr.partial td.health{background:#fff8c5}
tr.unhealthy td.health{background:#ffebe9}
nav{margin:.8em 0;padding:.5em .8em;background:#f6f8fa;border-radius:6px}nav a{color:#0969da}
.legend-key span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:4px}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:4px}
svg.chart{max-width:100%;height:auto}
"""

SECTIONS = (("by-layer", "Metrics by layer", "Across-seed means, with min–max whiskers where the grid has seeds."),
            ("training", "Training curves", "From the store's train_log: one line per SAE."),
            ("density", "Latent firing frequency",
             "From the store's latent_density: latents per log10 firing-frequency bin, per layer (first seed); "
             "'never' counts latents that never fired."))


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the blocks use: **bold** and `code`."""
    out = escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _table(block: TableBlock) -> str:
    attrs = f' data-kind="{escape(block.kind)}"' if block.kind else ""
    attrs += f' data-model="{escape(block.model)}"' if block.model else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in block.headers)
    rows = []
    health = len(block.headers) - 1 if block.kind == "layers" else -1
    for row, verdict in zip(block.rows, block.verdicts):
        cells = []
        for index, (cell, whole) in enumerate(zip(row, block.whole)):
            cls = "health" if index == health else ("num" if whole else "")
            cells.append(f'<td class="{cls}">{escape(cell)}</td>' if cls else f"<td>{escape(cell)}</td>")
        rows.append(f'<tr class="{verdict}">' if verdict else "<tr>")
        rows[-1] += "".join(cells) + "</tr>"
    return f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>' + "\n".join(rows) + \
        "</tbody></table></div>"


def _block(block: Block, anchor: str = "") -> str:
    if isinstance(block, Heading):
        ident = f' id="{anchor}"' if anchor else ""
        return f"<h{block.level}{ident}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    return _table(block)


def _charts(charts: list[Chart]) -> list[str]:
    out = []
    for key, title, note in SECTIONS:
        shown = [c for c in charts if c.section == key]
        if not shown:
            continue
        out.append(f'<h2 id="{key}">{escape(title)}</h2><p>{escape(note)}</p><div class="charts">')
        out += [f'<figure data-chart="{escape(c.title)}">{c.svg}</figure>' for c in shown]
        out.append("</div>")
    return out


def to_html(report: Report, comparison: Comparison | None, store: Store | None = None) -> str:
    blocks = report_blocks(report, comparison)
    title = blocks[0].text if blocks and isinstance(blocks[0], Heading) else "sae-bench report"
    key = ('<p class="legend-key">Health: <span style="background:#dafbe1">all gates pass</span>'
           '<span style="background:#fff8c5">at least half pass</span>'
           '<span style="background:#ffebe9">fewer than half pass</span></p>')
    charts = all_charts(report, store)
    anchors = {i: f"s{i}" for i, b in enumerate(blocks) if isinstance(b, Heading) and b.level == 2}
    contents = [(f"#{anchors[i]}", blocks[i].text) for i in sorted(anchors)]  # type: ignore[union-attr]
    contents += [(f"#{k}", title) for k, title, _ in SECTIONS if any(c.section == k for c in charts)]
    nav = ('<nav><strong>Contents:</strong> ' + " · ".join(f'<a href="{href}">{_inline(text)}</a>'
                                                          for href, text in contents) + "</nav>")
    body = [_block(blocks[0]), *(_block(b) for b in blocks[1:3]), key, nav,
            *(_block(b, anchors.get(i + 3, "")) for i, b in enumerate(blocks[3:]))]
    body += _charts(charts)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<meta name=\"generator\" content=\"sae-bench\">\n<title>{escape(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")
