"""Strict and lenient precision / recall / F1 for (drug, ADE) pairs, for entities alone, and for typed
NER spans. This file is the definition of the metrics:

- unit: per sentence, the set of (drug span, ADE span) pairs, spans as [start, end) character offsets;
  each drug span is first moved to the first case-insensitive, whole-word occurrence of its text in the
  sentence (on both sides), and duplicates collapse;
- strict: spans identical; lenient: every span overlaps its counterpart by at least one character;
- one-to-one: per sentence, the size M of a maximum bipartite matching between predicted and gold
  units; micro-averaged: P = sum M / sum |pred|, R = sum M / sum |gold|, F1 = 2PR / (P + R).

    python evaluate.py GOLD.jsonl PRED.jsonl [--level=pairs|drugs|ades|entities] [--bootstrap=1000]
    python evaluate.py GOLD.jsonl PRED.jsonl --errors     # false positives, false negatives, boundaries

Imports nothing from the project (numpy its one dependency), so it can be copied alone.
"""
import argparse
import functools
import json
import re
import sys

import numpy as np


class RecordError(ValueError):
    """A record or file that cannot be scored; the message names it and says what to do."""


@functools.lru_cache(maxsize=65536)  # scoring asks again for each threshold; re itself keeps 512 patterns
def canonical_drug(text, start, end):
    """Move a drug span to the first case-insensitive occurrence of its text in the sentence as a whole
    word (not inside a longer word; if there is none, the first occurrence). The match runs on the text
    itself, so offsets never shift where lowercasing changes a string's length ("İ")."""
    pattern = re.escape(text[start:end])
    whole_word = re.search(rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])", text, re.I)
    return (whole_word or re.search(pattern, text, re.I)).span()


def units(record, level):
    """A sentence record -> its set of units; a unit is a tuple of (start, end, type) spans."""
    text = record["text"]
    if level == "entities":
        return {((*e["span"], e["type"]),) for e in record.get("entities", [])}
    pairs = {((*canonical_drug(text, *p["drug"]), "drug"), (*p["ade"], "ade"))
             for p in record.get("pairs", [])}
    side = {"pairs": slice(0, 2), "drugs": slice(0, 1), "ades": slice(1, 2)}[level]  # a unit: both, or one
    return {pair[side] for pair in pairs}


def overlaps(unit_a, unit_b):
    return all(a[2] == b[2] and a[0] < b[1] and b[0] < a[1] for a, b in zip(unit_a, unit_b))


def max_matching(predicted, gold, match, start=()):
    """A maximum one-to-one matching, grown from the pairs of `start` -> [(predicted, gold)] (Kuhn's)."""
    gold = list(gold)
    owner = [next((p for p, g in start if g == unit), None) for unit in gold]  # owner[j]: matched to gold[j]

    def augment(p, seen):
        for j, g in enumerate(gold):
            if j not in seen and match(p, g):
                seen.add(j)
                if owner[j] is None or augment(owner[j], seen):
                    owner[j] = p
                    return True
        return False

    for p in predicted:
        if p not in owner:
            augment(p, set())
    return [(p, g) for p, g in zip(owner, gold) if p is not None]


def prf(tp, n_pred, n_gold):
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def check_record(record, where):
    """Spans must be [start, end) with 0 <= start < end <= len(text)."""
    text = record.get("text")
    if not isinstance(text, str):
        raise RecordError(f"{where}: no 'text' string")
    spans = [s for p in record.get("pairs", []) for s in (p.get("drug"), p.get("ade"))] + \
            [e.get("span") for e in record.get("entities", [])]
    for span in spans:
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span)
                and 0 <= span[0] < span[1] <= len(text)):
            raise RecordError(f"{where}: span {span!r} is not [start, end) inside the text of {len(text)} "
                              "characters")


def paired(gold, predicted):
    """-> [(gold record, predicted record)] by id; both sides must cover the same sentences."""
    gold_by_id, pred_by_id = ({r["id"]: r for r in records} for records in (gold, predicted))
    only_gold, only_pred = gold_by_id.keys() - pred_by_id.keys(), pred_by_id.keys() - gold_by_id.keys()
    if only_gold or only_pred:
        raise RecordError(f"gold and predictions cover different sentences: {len(only_gold)} ids only in "
                          f"gold (e.g. {sorted(only_gold)[:3]}), {len(only_pred)} only in predictions (e.g. "
                          f"{sorted(only_pred)[:3]}); predict every gold sentence (an empty list is fine).")
    for sid, g in gold_by_id.items():
        if pred_by_id[sid]["text"] != g["text"]:
            raise RecordError(f"sentence {sid}: the prediction's text differs from the gold text")
    return [(g, pred_by_id[sid]) for sid, g in gold_by_id.items()]


def score(gold, predicted, level="pairs", types=None, bootstrap=0):
    """gold, predicted: records with the same ids -> {"strict": {...}, "lenient": {...}}; with `types`, also
    each type's under "per_type"; with `bootstrap` = N, 95 % intervals "ci95" from N resamplings (seed 0)."""
    sentences = [(units(p, level), units(g, level)) for g, p in paired(gold, predicted)]
    # (sentences, 6): strict tp, n_pred, n_gold, then lenient tp, n_pred, n_gold
    table = np.array([[len(pu & gu), len(pu), len(gu), len(max_matching(pu, gu, overlaps)), len(pu), len(gu)]
                      for pu, gu in sentences], dtype=np.int64).reshape(-1, 6)
    result = {"strict": prf(*table[:, :3].sum(0).tolist()), "lenient": prf(*table[:, 3:].sum(0).tolist())}
    if bootstrap:  # resample whole sentences: (bootstrap, n sentences) indices -> summed counts per draw
        draws = table[np.random.default_rng(0).integers(0, len(table), (bootstrap, len(table)))].sum(1)
        for offset, metric in zip((0, 3), result.values()):
            samples = [prf(*draw[offset:offset + 3]) for draw in draws.tolist()]
            metric["ci95"] = {k: [float(x) for x in np.percentile([s[k] for s in samples], [2.5, 97.5])]
                              for k in ("precision", "recall", "f1")}
    for t in types or []:  # each type alone: the other types' entities dropped on both sides
        alone = [[{**r, "entities": [e for e in r.get("entities", []) if e["type"] == t]} for r in records]
                 for records in (gold, predicted)]
        result.setdefault("per_type", {})[t] = score(*alone, level)
    return result


def errors(gold, predicted, level="pairs"):
    """-> per sentence with a mistake: false positives, false negatives and boundary mismatches, as the text
    of their spans. From score's lenient maximum matching, grown from the identical pairs: a matched pair not
    identical is a boundary mismatch, so n_pred - false positives is score's lenient tp."""
    found = []
    for g, p in paired(gold, predicted):
        pu, gu = sorted(units(p, level)), sorted(units(g, level))
        matched = max_matching(pu, gu, overlaps, start=[(u, u) for u in set(pu) & set(gu)])
        boundary = sorted((a, b) for a, b in matched if a != b)
        fp = [u for u in pu if u not in {a for a, _ in matched}]
        fn = [u for u in gu if u not in {b for _, b in matched}]
        if fp or fn or boundary:
            show = lambda unit: " -> ".join(g["text"][s:e] for s, e, _ in unit)  # noqa: E731
            found.append({"id": g["id"], "text": g["text"], "false_positives": [show(u) for u in fp],
                          "false_negatives": [show(u) for u in fn],
                          "boundary": [{"predicted": show(a), "gold": show(b)} for a, b in boundary]})
    return found


def calibration_error(confidences, correct, bins=15):
    """Expected calibration error: the confidences cut into `bins` equal-width bins on [0, 1]; the mean over
    the units of |share correct - mean confidence| of their bin."""
    confidences, correct = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
    which = np.minimum((confidences * bins).astype(int), bins - 1)
    return float(sum(abs(correct[which == k].mean() - confidences[which == k].mean()) * (which == k).sum()
                     for k in range(bins) if (which == k).any()) / max(len(confidences), 1))


def confidence_and_correct(gold, predicted, level="pairs"):
    """-> each predicted unit's confidence, and whether it overlaps a gold unit of its sentence (lenient)."""
    gold_units = {r["id"]: units(r, level) for r in gold}
    confidences, correct = [], []
    for r in predicted:
        for u in r[level]:
            [unit] = units({"text": r["text"], level: [u]}, level)
            confidences.append(u["confidence"])
            correct.append(any(overlaps(unit, g) for g in gold_units[r["id"]]))
    return np.array(confidences), np.array(correct, dtype=float)


def average_precision(confidences, correct, n_gold):
    """The ranking by confidence: the mean over the gold units of the precision at the rank of each correct
    unit (a gold unit never predicted adds 0)."""
    hits = np.asarray(correct, dtype=float)[np.argsort(-np.asarray(confidences), kind="stable")]
    return float((np.cumsum(hits) / np.arange(1, len(hits) + 1) * hits).sum() / max(n_gold, 1))


def fit_platt(confidences, correct, steps=50):
    """(a, b) minimising the log-loss of sigmoid(a logit(c) + b) against `correct`, by damped Newton steps;
    None where there is nothing to fit or the fit would reverse the ranking (a <= 0)."""
    if len(set(correct.tolist())) < 2:
        return None
    features = np.stack([logit(confidences), np.ones(len(confidences))], 1)  # (n, 2)

    def log_loss(theta):
        z = features @ theta
        return float(np.sum(np.logaddexp(0, z) - correct * z))

    theta = np.array([1.0, 0.0])
    for _ in range(steps):
        p = np.exp(-np.logaddexp(0, -(features @ theta)))  # sigmoid, without overflow
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, features.T @ (p - correct))
        while log_loss(theta - step) > log_loss(theta) and np.abs(step).max() > 1e-12:
            step /= 2
        theta = theta - step
    return [float(theta[0]), float(theta[1])] if theta[0] > 0 else None


def platt(confidences, calibration):
    """Confidences -> sigmoid(a logit(c) + b); calibration None is (1, 0), the confidences as they are."""
    a, b = calibration or (1.0, 0.0)
    return 1 / (1 + np.exp(-np.clip(a * logit(confidences) + b, -30, 30)))


def logit(confidences):
    clipped = np.clip(np.asarray(confidences, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def markdown_table(rows):
    """Result rows ({"system", "teacher", "split", "strict", "lenient"}, as ade_distill writes them to
    results.json) -> a markdown table of P / R / F1 in percent, F1 with its 95 % interval where it has one."""
    lines = ["| system | teacher | split | strict P | strict R | strict F1 | lenient P | lenient R "
             "| lenient F1 |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cells = []
        for m in (r["strict"], r["lenient"]):
            interval = " [{:.1f}, {:.1f}]".format(*(100 * x for x in m["ci95"]["f1"])) if "ci95" in m else ""
            cells += [f"{100 * m['precision']:.2f}", f"{100 * m['recall']:.2f}",
                      f"{100 * m['f1']:.2f}{interval}"]
        lines.append(f"| {r['system']} | {r['teacher']} | {r['split']} | " + " | ".join(cells) + " |")
    if any("ci95" in r["strict"] for r in rows):
        lines += ["", "F1 [95 % interval, sentence bootstrap]"]
    return "\n".join(lines)


def read_jsonl(path):
    """Records of a JSONL file; a malformed line is an error naming the file and line."""
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON "
                                  "object") from None
            if not isinstance(record, dict) or "id" not in record:
                raise RecordError(f"{path}:{n}: expected an object with 'id' and 'text'")
            check_record(record, f"{path}:{n}")
            records.append(record)
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Strict and lenient P, R, F1 of predictions against gold.")
    parser.add_argument("files", nargs=2, metavar="JSONL", help="the gold records, then the predicted ones")
    parser.add_argument("--level", choices=("pairs", "drugs", "ades", "entities"), default="pairs")
    parser.add_argument("--errors", action="store_true", help="list false positives, negatives, boundaries")
    parser.add_argument("--bootstrap", type=int, default=0, help="resamplings for 95 %% intervals (0: none)")
    args = parser.parse_args()
    try:
        gold, predicted = (read_jsonl(path) for path in args.files)
        if args.errors:
            for e in errors(gold, predicted, args.level):
                print(f"{e['id']}\t{e['text']}", *[f"  false positive  {u}" for u in e["false_positives"]],
                      *[f"  false negative  {u}" for u in e["false_negatives"]],
                      *[f"  boundary        {b['predicted']}  (gold: {b['gold']})" for b in e["boundary"]],
                      sep="\n")
        else:
            print(json.dumps(score(gold, predicted, args.level, bootstrap=args.bootstrap), indent=2))
    except (OSError, RecordError) as e:
        sys.exit(f"error: {e}")
