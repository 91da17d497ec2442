"""Constrained Viterbi decoding against per-token argmax, on the same trained students (not collected by
pytest): the README's decoding row.

    python tests/decoding_ablation.py out/student [more/student ...]

Scores the test split at start cost 0 with `data.decode_spans` as it is (Viterbi) and replaced by a reader of
the per-token argmax tags (what the earlier version did).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ade_distill  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402

DECODERS = {"argmax": lambda enc, log_probs: data.bio_to_spans(enc, log_probs.argmax(-1).tolist()),
            "viterbi": data.decode_spans}

if __name__ == "__main__":
    test = data.ade_splits(data.data_root())["test"]
    for student_dir in sys.argv[1:]:
        student, meta = model.load_student(student_dir)
        tokenizer = model.load_tokenizer(student_dir)
        cfg = ade_distill.Config(start_cost=0.0, max_len=meta["max_len"],
                                 subword_labels=meta.get("subword_labels", "all"))
        for name, decode in DECODERS.items():
            data.decode_spans = decode  # predict() reads it from the module at call time
            predicted = ade_distill.predict(student, tokenizer, test, cfg, torch.device("cpu"))
            row = ade_distill.score_rows("student", cfg, {"test": test}, predicted, None)[0]
            print(f"{student_dir} {name}: strict F1 {100 * row['strict']['f1']:.2f} "
                  f"lenient F1 {100 * row['lenient']['f1']:.2f}")
