#!/usr/bin/env bash
# Every run behind RESULTS.md, one at a time (on 2 cores two runs at once would falsify each other's
# times), each into runs/NAME: the run's own outputs, log.txt, time.txt (/usr/bin/time -v) and run.json
# (the command, the commit, the machine, the date). A run whose results exist is skipped, so an
# interrupted script resumes where it stopped. Then the tables:
#
#   bash tests/tools/reproduce.sh                      # every run (hours on a 2-core CPU)
#   bash tests/tools/reproduce.sh default_s1 cv10      # the named runs only
#   python tests/tools/results.py runs > RESULTS.md
#
# RUNS_DIR (default: runs) and EXTRA (options added to every run) serve the test suite's tiny form.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS_DIR=${RUNS_DIR:-runs}

# name | ade_distill.py options (each run also gets --out_dir=runs/NAME)
RUNS="
default_s0 |
default_s1 | --seed=1
default_s2 | --seed=2
supervised_s0 | --teacher=gold --empty_ratio=0 --epochs=10
supervised_s1 | --teacher=gold --empty_ratio=0 --epochs=10 --seed=1
supervised_s2 | --teacher=gold --empty_ratio=0 --epochs=10 --seed=2
plain_default | --head=plain
plain_supervised | --head=plain --teacher=gold --empty_ratio=0 --epochs=10
ncbi_lexicon | --task=ner --dataset=ncbi_disease
ncbi_gold | --task=ner --dataset=ncbi_disease --teacher=gold
bc5cdr_lexicon | --task=ner --dataset=bc5cdr
bc5cdr_gold | --task=ner --dataset=bc5cdr --teacher=gold
cv10 | --teacher=gold --empty_ratio=0 --epochs=4 --cv=10
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

echo "$RUNS" | while IFS='|' read -r name options; do
    name=$(echo "$name" | xargs)
    [ -n "$name" ] || continue
    if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
    out=$RUNS_DIR/$name
    if [ -f "$out/results.json" ] || [ -f "$out/cv_results.md" ]; then
        echo "$name: done, skipped"
        continue
    fi
    command=$(echo "python ade_distill.py --out_dir=$out $options ${EXTRA:-}" | xargs)
    echo "$name: $command"
    mkdir -p "$out"
    python - "$out/run.json" "$command" "$(code_commit)" "$(machine)" "$(date -u +%Y-%m-%d)" <<'PY'
import json, sys
path, command, commit, machine, date = sys.argv[1:]
json.dump({"command": command, "commit": commit, "machine": machine, "date": date}, open(path, "w"), indent=1)
PY
    /usr/bin/time -v -o "$out/time.txt" $command > "$out/log.txt" 2>&1
done
