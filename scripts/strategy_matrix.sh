#!/usr/bin/env bash
# Every prompting strategy end to end on a real tiny model, with its compute (issue 5's table).
#
#   scripts/strategy_matrix.sh [VARIANT...]     default: the demo's SmolLM2 Q4_K_M and Q8_0
#   LIMIT=20 THREADS=2 OUT=out/strategies       (environment overrides)
#
# Writes OUT/results.sqlite (resumable: rerun to continue), OUT/report.md and OUT/report.html;
# the "Accuracy and compute by strategy" table is the answer. Needs `make demo` first (or any
# variants given as arguments). Chains are capped at 256 tokens to keep a 2-core run near an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
QS=.venv/bin/quantsuite
OUT=${OUT:-out/strategies}
LIMIT=${LIMIT:-20}
THREADS=${THREADS:-2}
V=("$@")
[[ ${#V[@]} -gt 0 ]] || V=(out/demo/variants/smollm2-135m-instruct/gguf-q4_k_m out/demo/variants/smollm2-135m-instruct/gguf-q8_0)
S="$OUT/results.sqlite"
mkdir -p "$OUT"
run() { "$QS" eval "${V[@]}" --store "$S" --limit "$LIMIT" --threads "$THREADS" "$@"; }
T=max_tokens=256
run --tasks gsm8k --strategies "direct,cot:$T,sc@5:$T,rag,rag+sc@5:$T,rag-xdoc@5:$T,rag-select:$T,anytime:budgets=0/64/128/256"
run --tasks arc_easy --strategies "direct,cot:$T,sc@5:$T,rag,rag+sc@5:$T"
run --tasks folio,proofwriter --strategies "direct,cot:$T,lot,lot:answer=cot,lot:answer=sc,k=5"
"$QS" report "$S" -o "$OUT/report.md"
"$QS" report "$S" -o "$OUT/report.html"
