"""Where the training process's memory goes: resident memory (and its peak) while MiniLM trains on 3,000
corpus sentences (2,000 annotated + 1,000 ADE-free), step by step, then while it predicts test+neg.
Not collected by pytest; run it as

    PAD=1 python tests/memory_probe.py 80                                  # batches padded to the longest sentence
    PAD=8 python tests/memory_probe.py 80                                  # to a multiple of 8 tokens (the default)
    PAD=8 MALLOC_MMAP_THRESHOLD_=131072 python tests/memory_probe.py 80    # glibc: large buffers always by mmap
"""
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ade_distill  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402


def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(steps, pad):
    cfg = ade_distill.Config()
    splits = data.ade_splits(data.data_root())
    path = ade_distill.default_student()
    tokenizer = model.load_tokenizer(path)
    student = model.AdeModel(model.load_encoder(path), 0.1)
    examples = ade_distill.make_examples(splits["train"][:2000] + splits["negatives"][:1000], tokenizer, cfg, None)
    optimizer = torch.optim.AdamW(student.parameters(), 1e-4)
    batches = data.length_batches([len(x["ids"]) for x in examples], 32, shuffle=True, seed=0)
    print(f"start: RSS {rss_mb()} MB, peak {peak_mb()} MB")
    shapes, t0 = set(), time.time()
    for step, ids in enumerate(batches[:steps], 1):
        arrays = data.collate([examples[i] for i in ids], multiple=pad)
        shapes.add(arrays["input_ids"].shape)
        loss, n = ade_distill.batch_loss(student, ade_distill.to_device(arrays, torch.device("cpu")), "ade")
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 20 == 0:
            print(f"step {step}: RSS {rss_mb()} MB, peak {peak_mb()} MB, {len(shapes)} batch shapes so far")
    print(f"training: {time.time() - t0:.1f} s for {steps} steps; RSS {rss_mb()} MB, peak {peak_mb()} MB")
    t0 = time.time()
    ade_distill.predict(student, tokenizer, splits["test+neg"], cfg, torch.device("cpu"))
    print(f"predicting test+neg: {time.time() - t0:.1f} s; RSS {rss_mb()} MB, peak {peak_mb()} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 80, int(os.environ.get("PAD", 8)))
