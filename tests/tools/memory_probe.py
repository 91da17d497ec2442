"""Where the training process's memory goes: resident memory (and its peak) while MiniLM trains on 3,000
corpus sentences (2,000 annotated + 1,000 ADE-free), step by step, then while it predicts test+neg.
Not collected by pytest; run it as

    PAD=1 python tests/tools/memory_probe.py 80   # batches padded to the longest sentence
    PAD=8 python tests/tools/memory_probe.py 80   # to a multiple of 8 tokens (the default)
    PAD=8 MALLOC_MMAP_THRESHOLD_=131072 python tests/tools/memory_probe.py 80   # glibc: large buffers by mmap
    AMP=bf16 python tests/tools/memory_probe.py 80   # under bf16 autocast (the default where the CPU has it)

Each step runs its whole batch of 32 at once (not as the training loop's micro-batches of MAX_BATCH_TOKENS).
Options for a quick check of the script: --sentences=N trains on N sentences (2/3 annotated, 1/3 ADE-free),
--predict=N predicts only the first N of test+neg, --init_from=DIR measures another BERT directory.
"""
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import ade_distill  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402

OPTIONS = {"sentences": "3000", "predict": "0", "init_from": ""}


def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(steps, pad, sentences=3000, n_predict=0, init_from=""):
    cfg = ade_distill.Config()
    meta = {"task": "ade", "types": ["drug", "ade"], "max_len": cfg.max_len}
    splits = data.load_splits(data.data_root())
    path = init_from or model.default_encoder()
    tokenizer = model.load_tokenizer(path)
    student = ade_distill.build_student(model.load_encoder(path, ade_distill.DROPOUT), cfg, meta["types"])
    n_annotated = 2 * sentences // 3
    records = splits["train"][:n_annotated] + splits["negatives"][:sentences - n_annotated]
    examples = ade_distill.make_examples(records, tokenizer, student, meta)
    optimizer = torch.optim.AdamW(student.parameters(), 1e-4)
    batches = data.length_batches([len(x["ids"]) for x in examples], 32, shuffle=True, seed=0)
    dtype = {"bf16": torch.bfloat16, "fp32": None}[os.environ.get("AMP", "fp32")]
    print(f"start: RSS {rss_mb()} MB, peak {peak_mb()} MB, precision {model.precision_name(dtype)}")
    student.train()
    shapes, t0 = set(), time.time()
    for step, ids in enumerate(batches[:steps], 1):
        arrays = data.collate([examples[i] for i in ids], multiple=pad)
        shapes.add(arrays["input_ids"].shape)
        n = int((arrays["labels"] != -100).sum() + (arrays["ade_labels"] != -100).sum())
        with model.autocast(torch.device("cpu"), dtype):
            loss = student.loss({k: torch.from_numpy(v) for k, v in arrays.items()})
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 20 == 0:
            print(f"step {step}: RSS {rss_mb()} MB, peak {peak_mb()} MB, {len(shapes)} batch shapes so far")
    print(f"training: {time.time() - t0:.1f} s for {steps} steps; RSS {rss_mb()} MB, peak {peak_mb()} MB")
    t0 = time.time()
    ade_distill.predict(student, tokenizer, splits["test+neg"][:n_predict or None], meta, dtype)
    print(f"predicting test+neg: {time.time() - t0:.1f} s; RSS {rss_mb()} MB, peak {peak_mb()} MB")


if __name__ == "__main__":
    o, positional = dict(OPTIONS), []
    for arg in sys.argv[1:]:
        key, eq, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--"):
            positional.append(arg)
        elif key in o and eq:
            o[key] = value
        else:
            sys.exit(f"error: unknown option {arg}; usage: python tests/tools/memory_probe.py [STEPS] "
                     "[--sentences=N] [--predict=N] [--init_from=DIR]")
    main(int(positional[0]) if positional else 80, int(os.environ.get("PAD", 8)), int(o["sentences"]),
         int(o["predict"]), o["init_from"])
