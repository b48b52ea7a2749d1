#!/usr/bin/env bash
# Regenerate docs/demo-report.md from a fresh run of specs/demo.toml:  ./docs/make-demo-report.sh
# Uses its own results file (results/demo-report.duckdb), so your results/demo.duckdb is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
SAE_BENCH=${SAE_BENCH:-.venv/bin/sae-bench}
rm -f results/demo-report.duckdb
"$SAE_BENCH" run specs/demo.toml --db results/demo-report.duckdb
"$SAE_BENCH" report results/demo-report.duckdb --compare base finetune --format markdown -o docs/demo-report.md
"$(dirname "$SAE_BENCH")/python" docs/make_tui_screenshot.py results/demo-report.duckdb docs/tui-compare.svg
