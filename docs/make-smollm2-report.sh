#!/usr/bin/env bash
# Regenerate docs/smollm2-report.md from a fresh run of specs/smollm2.toml:  ./docs/make-smollm2-report.sh
# Uses its own results file (results/smollm2-report.duckdb), so your results/smollm2.duckdb is untouched.
# The report is `sae-bench report`'s; the per-letter probe F1 table (absorption_letters) is appended
# from the same file with `sae-bench sql`.
set -euo pipefail
cd "$(dirname "$0")/.."
SAE_BENCH=${SAE_BENCH:-.venv/bin/sae-bench}  # may be a command line, e.g. "env PYTHONPATH=$PWD .venv/bin/sae-bench"
DB=results/smollm2-report.duckdb
OUT=docs/smollm2-report.md
rm -f "$DB"
TIMES=$(mktemp)
/usr/bin/time -f "%e %U %S" -o "$TIMES" $SAE_BENCH run specs/smollm2.toml --db "$DB"
read -r wall user sys < "$TIMES" && rm -f "$TIMES"
echo "run took $wall s wall, $user s user + $sys s system CPU"
$SAE_BENCH report "$DB" --format markdown -o "$OUT"
{
  echo
  echo "## Absorption: ground-truth probe F1 per letter and layer (table absorption_letters)"
  echo
  echo "A letter is scored where its probe F1 > 0.6 (SAEBench's f1_threshold); the eval needs 20 such"
  echo "letters at a layer for a number, else it stores n/a with the reason."
  echo
  echo '```'
  $SAE_BENCH sql "$DB" --format plain "
    select a.layer, count(*) filter (where l.probe_f1 > 0.6) as letters_passing,
           round(avg(l.probe_f1), 3) as mean_f1, any_value(m.value) as absorption
    from absorption_letters l join scores s using (score_id) join saes a using (sae_id)
    left join metrics m on m.score_id = s.score_id and m.metric = 'absorption'
    group by 1 order by 1"
  echo
  $SAE_BENCH sql "$DB" --format plain "
    pivot (select l.letter, 'L' || a.layer as layer, round(l.probe_f1, 2) as f1
           from absorption_letters l join scores s using (score_id) join saes a using (sae_id))
    on layer in ('L3', 'L9', 'L15', 'L21', 'L27') using first(f1) order by letter"
  echo '```'
  echo
  echo "## Run time"
  echo
  echo "\`sae-bench run specs/smollm2.toml\` (training, core evals, absorption, sparse probing): $wall s wall,"
  echo "$user s user + $sys s system CPU (/usr/bin/time) on $(nproc) cores, one torch thread; the machine"
  echo "may have been shared with other work, so wall time is an upper bound and CPU time the better guide."
} >> "$OUT"
