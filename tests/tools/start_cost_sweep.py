"""The start cost against precision, on trained students (not collected by pytest): the dev score, and
strict F1 / lenient P / lenient F1 at every start cost of the grid on dev, dev+neg (dev plus the ADE-free
sentences of its PubMed IDs), test and test+neg, from one encoder pass over all of them.

    python tests/tools/start_cost_sweep.py [--first=N] out [more_out ...]

Each argument is a trained out_dir (or its student/ folder). --first=N keeps only the first N sentences of
each set (a quick check of the script; the figures then mean nothing).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import ade_distill  # noqa: E402
import data  # noqa: E402


def main(argv):
    first = [int(a.removeprefix("--first=")) for a in argv if a.startswith("--first=")]
    student_dirs = [a for a in argv if not a.startswith("--first=")]
    if not student_dirs or any(a.startswith("--") for a in student_dirs):
        sys.exit("usage: python tests/tools/start_cost_sweep.py [--first=N] OUT_DIR [OUT_DIR ...]")
    splits = data.load_splits(data.data_root())
    sets = {name: splits[name][:first[-1] if first else None]
            for name in ("dev", "dev+neg", "test", "test+neg")}
    every = list({r["id"]: r for records in sets.values() for r in records}.values())
    cfg = ade_distill.Config()  # score_rows reads the task, the teacher's name and --given_drugs from it
    for student_dir in student_dirs:
        student, tokenizer, meta = ade_distill.load_trained(student_dir)
        outs = ade_distill.predict(student, tokenizer, every, meta, costs=ade_distill.COST_GRID)
        print(f"\n{student_dir} (its start cost: {meta.get('start_cost')}); "
              "strict F1 / lenient P / lenient F1")
        print("| start cost | dev score | " + " | ".join(sets) + " |\n| ---: | ---: |" + " --- |" * len(sets))
        for cost, predicted in zip(ade_distill.COST_GRID, outs):
            rows = ade_distill.score_rows("student", cfg, sets, predicted)
            cells = [f"{100 * r['strict']['f1']:.2f} / {100 * r['lenient']['precision']:.2f} / "
                     f"{100 * r['lenient']['f1']:.2f}" for r in rows]
            print(f"| {cost:g} | {100 * ade_distill.dev_score(rows[0]):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
