"""The O bias against precision, on trained students (not collected by pytest): strict F1 and lenient P and F1
at every O bias of the grid, on dev, dev+neg (dev plus the ADE-free sentences of its PubMed IDs), test and
test+neg, from one encoder pass over all of them. The README's O-bias rows.

    python tests/o_bias_sweep.py out/student [more/student ...]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ade_distill  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402

if __name__ == "__main__":
    splits = data.ade_splits(data.data_root())
    sets = {name: splits[name] for name in ("dev", "dev+neg", "test", "test+neg")}
    every = list({r["id"]: r for records in sets.values() for r in records}.values())
    for student_dir in sys.argv[1:]:
        student, meta = model.load_student(student_dir)
        cfg = ade_distill.Config(max_len=meta["max_len"], subword_labels=meta.get("subword_labels", "all"))
        outs = ade_distill.predict(student, model.load_tokenizer(student_dir), every, cfg, torch.device("cpu"),
                                   o_biases=ade_distill.O_BIAS_GRID)
        print(f"\n{student_dir} (O bias chosen on dev: {meta.get('o_bias')}); strict F1 / lenient P / lenient F1")
        print("| O bias | " + " | ".join(sets) + " |\n| ---: |" + " --- |" * len(sets))
        for bias, predicted in zip(ade_distill.O_BIAS_GRID, outs):
            rows = ade_distill.score_rows("student", cfg, sets, predicted, None)
            print(f"| {bias:g} | " + " | ".join(f"{100 * r['strict']['f1']:.2f} / {100 * r['lenient']['precision']:.2f}"
                                               f" / {100 * r['lenient']['f1']:.2f}" for r in rows) + " |")
