"""How much of a student's calibration error on test+neg is the sample's (not collected by pytest):

    python tests/tools/calibration_noise.py --runs=OUT[,OUT...] [--draws=1000] [--out_dir=DIR]

For each trained ADE out_dir, its pairs on all of test+neg with their calibrated confidences and lenient
correctness, as a default run scores them (`confidence_rows`; in the run's --amp), and:
- the expected calibration error (15 bins);
- the floor: the error a perfectly calibrated student with these very confidences reads on this many
  pairs (each pair drawn correct with the probability its confidence says): mean, 95th percentile, and
  the share of draws above 0.05;
- on dev+neg, where Platt scaling is fitted: the error of the saved fit, and cross-fitted (refitted on
  four fifths, read on the fifth left out, pooled; 20 shuffles): out of sample, and test left untouched.
DIR/calibration_noise.md: the table (results.py puts it in RESULTS.md).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import ade_distill  # noqa: E402
import data  # noqa: E402
import evaluate  # noqa: E402
import model  # noqa: E402


def confidences_and_correct(student, tokenizer, meta, records, amp):
    """-> the model's own confidences of the student's pairs on `records`, and their lenient correctness."""
    dtype = model.choose_precision(next(student.parameters()).device, amp)[0]
    raw = ade_distill.predict(student, tokenizer, records, meta, dtype, raw=True)
    return evaluate.confidence_and_correct(records, raw, "pairs")


def crossfitted_error(confidences, correct, shuffles=20, folds=5):
    """The mean over shuffles of the error of the pooled out-of-fold confidences: Platt scaling refitted
    without each fold, read on it."""
    errors = []
    for seed in range(shuffles):
        fold = np.random.default_rng(seed).permutation(len(confidences)) % folds
        held_out = np.empty(len(confidences))
        for k in range(folds):
            fit = evaluate.fit_platt(confidences[fold != k], correct[fold != k])
            held_out[fold == k] = evaluate.platt(confidences[fold == k], fit)
        errors.append(evaluate.calibration_error(held_out, correct))
    return float(np.mean(errors))


def floor(confidences, draws):
    """-> the errors of a perfectly calibrated student with these confidences: each pair drawn correct with
    the probability its confidence says, `draws` times. (A bootstrap interval of the error itself would
    mislead: pairs drawn again fill fewer distinct points per bin, which raises the error.)"""
    rng = np.random.default_rng(0)
    return np.array([evaluate.calibration_error(confidences, rng.random(len(confidences)) < confidences)
                     for _ in range(draws)])


def trained(out):
    """The run's name, and where and when reproduce.sh trained it (its run.json), if it did."""
    path, name = os.path.join(out, "run.json"), os.path.basename(os.path.normpath(out))
    run = json.load(open(path)) if os.path.exists(path) else None
    return f"{name} ({run['machine'].split(',')[0]}, {run['date']})" if run else name


def main(argv):
    options = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if len(options) != len(argv) or not options.get("runs") or set(options) - {"runs", "draws", "out_dir"} \
            or not options.get("draws", "1").isdigit() or int(options.get("draws", 1)) < 1:
        sys.exit("usage: python tests/tools/calibration_noise.py --runs=OUT[,OUT...] [--draws=N (1000)] "
                 "[--out_dir=DIR]")
    draws = int(options.get("draws", 1000))
    splits = data.load_splits(data.data_root())
    lines = ["| student | pairs | ECE | a calibrated student's ECE: mean / 95th percentile (share > 0.05) | "
             "dev+neg ECE: fitted / cross-fitted |", "| --- |" + " ---: |" * 4]
    for out in options["runs"].split(","):
        student, tokenizer, meta = ade_distill.load_trained(out)
        if meta["task"] != "ade":
            sys.exit(f"{out}: a {meta['task']} student; this tool reads ADE pairs")
        amp = json.load(open(os.path.join(out, "config.json")))["amp"]
        dev_raw, dev_correct = confidences_and_correct(student, tokenizer, meta, splits["dev+neg"], amp)
        raw, correct = confidences_and_correct(student, tokenizer, meta, splits["test+neg"], amp)
        confidences = evaluate.platt(raw, meta["calibration"])
        errors = floor(confidences, draws)
        dev_error = evaluate.calibration_error(evaluate.platt(dev_raw, meta["calibration"]), dev_correct)
        crossfitted = crossfitted_error(dev_raw, dev_correct)
        error = evaluate.calibration_error(confidences, correct)
        lines.append(f"| {trained(out)} | {len(raw):,} | {error:.3f} | "
                     f"{errors.mean():.3f} / {np.quantile(errors, 0.95):.3f} "
                     f"({100 * (errors > 0.05).mean():.0f} %) | {dev_error:.3f} / {crossfitted:.3f} |")
        print(lines[-1], flush=True)
    if options.get("out_dir"):
        os.makedirs(options["out_dir"], exist_ok=True)
        with open(os.path.join(options["out_dir"], "calibration_noise.md"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
