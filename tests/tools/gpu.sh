#!/usr/bin/env bash
# The GPU check, a few minutes on one GPU: benchmark row 7 (its docstring, gpu_rows, says what each row
# measures). Writes OUT_DIR (default runs/gpu): benchmark.md, log.txt and run.json, which
# tests/tools/results.py shows in RESULTS.md. STUDENT (default runs/default_s0): the trained out_dir it
# predicts with; COMMIT: the program's commit where the tree has no .git.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${OUT_DIR:-runs/gpu}
STUDENT=${STUDENT:-runs/default_s0}
COMMIT=${COMMIT:-$(git log -1 --format=%h -- ade_distill.py model.py teacher.py data.py evaluate.py)}
mkdir -p "$OUT_DIR"
command="python3 tests/tools/benchmark.py --row=7 --init_from=$STUDENT/student --student=$STUDENT"
start=$SECONDS
PYTHONUNBUFFERED=1 $command --out_dir="$OUT_DIR" 2>&1 | tee "$OUT_DIR/log.txt"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
machine="$gpu, $(nproc) CPUs, torch $(python3 -c 'import torch; print(torch.__version__)')"
wall=$((SECONDS - start))
python3 - "$OUT_DIR/run.json" "$command" "$COMMIT" "$machine" "$(date -u +%Y-%m-%d)" $wall <<'PY'
import json, sys
path, command, commit, machine, date, wall = sys.argv[1:]
json.dump({"command": command, "commit": commit, "machine": machine, "date": date, "wall_s": int(wall)},
          open(path, "w"), indent=1)
PY
