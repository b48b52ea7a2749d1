"""Line charts (plotext in the terminal) for training curves and metric-by-layer plots."""

from __future__ import annotations

from textual_plotext import PlotextPlot


def draw_lines(plot: PlotextPlot, title: str, xlabel: str,
               series: list[tuple[str | None, list[float], list[float]]]) -> None:
    """Redraw `plot` with one line per (label, xs, ys); empty series leave an empty titled frame."""
    plot.plt.clear_data()
    plot.plt.clear_figure()
    plot.plt.title(title)
    for label, xs, ys in series:
        if xs:
            if label is None:
                plot.plt.plot(xs, ys)
            else:
                plot.plt.plot(xs, ys, label=label, marker="hd")
    plot.plt.xlabel(xlabel)
    plot.refresh()
