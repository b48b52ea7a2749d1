"""The JSON report's text layout (`suite.report_json.dumps`): indented down to each layer and
each compared layer, which is one line; the parsed document is exactly what `json.dumps` of the
same document gives, whatever user text the layers hold."""

from __future__ import annotations

import json
import math

import pytest

from suite.report_json import dumps

TRICKY = ['plain', 'a "quoted" \\ name', 'nul \x00 inside', '"\\u0000deadbeef:0"', '\x00', 'ünïcode ✅', 'line\nbreak']


def _document(comparison: bool) -> dict:
    layers = [{"layer": i, "label": text, "evals": {"web": {"l0": {"value": 0.1 * i, "seeds": [{"seed": 0}]}}}}
              for i, text in enumerate(TRICKY)]
    return {"format": "sae-bench report", "version": 1, "source": {"db": TRICKY[3]},
            "models": [{"name": TRICKY[2], "layers": layers}, {"name": "empty", "layers": []}],
            "comparison": {"a": TRICKY[3], "layers": [{"layer": 1, "label": TRICKY[4]}]} if comparison else None}


@pytest.mark.parametrize("comparison", [False, True])
def test_json_layout_is_the_same_document_one_layer_per_line(comparison: bool) -> None:
    document = _document(comparison)
    text = dumps(document)
    assert text.endswith("}\n")
    assert json.loads(text) == json.loads(json.dumps(document, indent=2)) == document
    lines = text.splitlines()
    assert lines[:3] == ["{", '  "format": "sae-bench report",', '  "version": 1,']
    one_line = [json.loads(line.strip().rstrip(",")) for line in lines if line.lstrip().startswith('{"layer": ')]
    expected = [*document["models"][0]["layers"], *(document["comparison"]["layers"] if comparison else [])]
    assert one_line == expected


def test_json_layout_refuses_nan() -> None:
    document = _document(False)
    document["models"][0]["layers"][0]["evals"]["web"]["l0"]["value"] = math.nan
    with pytest.raises(ValueError):
        dumps(document)
