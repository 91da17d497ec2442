"""The start cost against precision, on trained students (not collected by pytest): the dev score, and strict F1
/ lenient P / lenient F1 at every start cost of the grid on dev, dev+neg (dev plus the ADE-free sentences of its
PubMed IDs), test and test+neg, from one encoder pass over all of them. The README's start-cost rows.

    python tests/start_cost_sweep.py [--o_bonus] out/student [more/student ...]

--o_bonus decodes with the rule the start cost replaced: the value added to O's log-probability at every
token (the earlier "O bias", which also cuts spans short), for the README's comparison.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ade_distill  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402


start_cost_log_softmax = ade_distill.log_softmax


def o_bonus_log_softmax(logits, bonus=0.0):
    log_probs = start_cost_log_softmax(logits)  # at cost 0: the plain log-probabilities
    log_probs[..., 0] += bonus
    return log_probs


if __name__ == "__main__":
    student_dirs = [a for a in sys.argv[1:] if a != "--o_bonus"]
    rule = "O bonus" if "--o_bonus" in sys.argv else "start cost"
    if rule == "O bonus":
        ade_distill.log_softmax = o_bonus_log_softmax  # ade_fields() reads it from the module at call time
    splits = data.ade_splits(data.data_root())
    sets = {name: splits[name] for name in ("dev", "dev+neg", "test", "test+neg")}
    every = list({r["id"]: r for records in sets.values() for r in records}.values())
    for student_dir in student_dirs:
        student, meta = model.load_student(student_dir)
        cfg = ade_distill.Config(max_len=meta["max_len"], subword_labels=meta.get("subword_labels", "all"))
        outs = ade_distill.predict(student, model.load_tokenizer(student_dir), every, cfg, torch.device("cpu"),
                                   costs=ade_distill.COST_GRID)
        print(f"\n{student_dir} (its start cost: {meta.get('start_cost')}); strict F1 / lenient P / lenient F1")
        print(f"| {rule} | dev score | " + " | ".join(sets) + " |\n| ---: | ---: |" + " --- |" * len(sets))
        for cost, predicted in zip(ade_distill.COST_GRID, outs):
            rows = ade_distill.score_rows("student", cfg, sets, predicted, None)
            cells = [f"{100 * r['strict']['f1']:.2f} / {100 * r['lenient']['precision']:.2f} / "
                     f"{100 * r['lenient']['f1']:.2f}" for r in rows]
            print(f"| {cost:g} | {100 * ade_distill.dev_score(rows[0]):.2f} | " + " | ".join(cells) + " |")
