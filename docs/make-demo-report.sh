#!/usr/bin/env bash
# Regenerate docs/demo-report.{md,html,json} (and the TUI screenshot) from a fresh run of
# specs/demo.toml:  ./docs/make-demo-report.sh
# Uses its own results file (results/demo-report.duckdb), so your results/demo.duckdb is untouched.
# SKIP_RUN=1 reuses that file (to re-render after a change to the report code).
set -euo pipefail
cd "$(dirname "$0")/.."
SAE_BENCH=${SAE_BENCH:-.venv/bin/sae-bench}
DB=results/demo-report.duckdb
if [ -z "${SKIP_RUN:-}" ]; then
  rm -f "$DB"
  "$SAE_BENCH" run specs/demo.toml --db "$DB"
fi
for format in md html json; do
  "$SAE_BENCH" report "$DB" --compare base finetune --format "$format" -o "docs/demo-report.$format"
done
"$(dirname "$SAE_BENCH")/python" docs/make_tui_screenshot.py "$DB" docs/tui-compare.svg
