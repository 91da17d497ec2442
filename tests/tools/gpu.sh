#!/usr/bin/env bash
# The GPU check (benchmark row 7, a few minutes on one GPU): prediction in bf16 with and without the
# confidences, and a training step's tokens/s and MFU for MiniLM and a BERT-base-sized encoder in bf16 and
# in fp16 with a GradScaler. Writes OUT_DIR (default runs/gpu): benchmark.md, log.txt and run.json, which
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
machine="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(nproc) CPUs, torch $(python3 -c \
    'import torch; print(torch.__version__)')"
python3 - "$OUT_DIR/run.json" "$command" "$COMMIT" "$machine" "$(date -u +%Y-%m-%d)" $((SECONDS - start)) <<'PY'
import json, sys
path, command, commit, machine, date, wall = sys.argv[1:]
json.dump({"command": command, "commit": commit, "machine": machine, "date": date, "wall_s": int(wall)},
          open(path, "w"), indent=1)
PY
