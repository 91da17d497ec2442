"""Distil a teacher (an LLM, or an offline lexicon) into a small BERT student for adverse drug event
extraction (Gu et al. 2023, arXiv 2307.06439) or medication / disease NER (Vedula et al. 2024,
arXiv 2501.00031), and score teacher and student side by side on the test split.

    python ade_distill.py                                             # lexicon teacher -> MiniLM student
    python ade_distill.py --teacher=gold --empty_ratio=0 --epochs=10  # the paper's supervised row
    python ade_distill.py --teacher=llm --base_url=http://localhost:8000/v1 --llm_model=NAME --shots=5
    python ade_distill.py --task=ner --dataset=bc5cdr
    python ade_distill.py --out_dir=out --predict="Lithium-induced nephrogenic diabetes insipidus."

The method first: `run` and its steps in the order it calls them (the teacher labels the pool and the
sentences it is scored on -> the student learns from the pool's labels in a handwritten loop, gold dev
picking the epoch and the decoder's start cost -> teacher and student on `test` and `test+neg`). Then,
under one divider, the operations: the command line, its checks, prediction from it (streamed by
data.map_jsonl; devices and precision are model.py's).
"""
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

import data
import evaluate
import model
import teacher


@dataclass
class Config(teacher.TeacherConfig):  # the teacher's options (--teacher, --task, --base_url...) come with it
    out_dir: str = "out"
    seed: int = 0
    # what the teacher labels
    max_pool: int = 0  # a cap on the unlabeled sentences, drawn with --seed (0 = all 17,063)
    pool: str = ""  # a sentences file (e.g. `python data.py --pubmed=...`) in place of the corpus's pool
    labels: str = ""  # a labels file (teacher.py's, or any tool's): train on it, no teacher is called
    empty_ratio: float = 0.5  # sentences the teacher found nothing in, per sentence it labelled (-1 = all)
    eval_teacher_only: bool = False  # score the teacher on test and stop (the papers' LLM rows), or on:
    eval_split: str = "test"  # dev: with --eval_teacher_only, to choose prompts and teachers without test
    eval_sample: int = 0  # with --eval_teacher_only: N sentences of the split's widest set, drawn with --seed
    # the student
    init_from: str = ""  # a Hugging Face BERT directory, or hf:ORG/NAME; default: all-MiniLM-L6-v2
    head: str = "drug"  # drug: the paper's drug-centric head | plain: one BIO head, no drug (the ablation)
    given_drugs: bool = False  # score the ADE head on the gold drug spans instead of the drug head's
    max_len: int = 128  # tokens; longer sentences are cut (and counted)
    start_cost: float = -1.0  # subtracted from each B tag's log-probability: a span pays it once (-1: chosen)
    min_confidence: float = 0.0  # drop predicted pairs and entities whose calibrated confidence is lower
    target_precision: float = 0.0  # > 0: a run sets --min_confidence on dev+neg for this lenient precision
    # training
    epochs: int = 2
    max_steps: int = 0  # a cap on optimizer steps (0 = none)
    batch_size: int = 32
    lr: float = 1e-4
    device: str = "auto"
    amp: str = "auto"  # bf16 where the GPU or CPU has it natively, else fp16+GradScaler on CUDA, fp32 on CPU
    resume: bool = False  # continue training from out_dir/last, the checkpoint of the last epoch
    overwrite: bool = False  # replace a finished run in out_dir
    # the 10-fold protocol, and prediction with a trained out_dir
    cv: int = 0  # 10: folds by PubMed ID; the student's strict and lenient F1 per fold and mean +- sd
    predict: str = ""
    predict_file: str = ""  # JSON Lines or plain text, one sentence a line -> JSON Lines on stdout, or:
    predict_out: str = ""  # --predict_file's output in place of stdout; rerun to resume after a kill
    shard: str = ""  # K/N: --predict_file's K-th of N contiguous parts (1 <= K <= N), for N processes

    CHOICES = {**teacher.TeacherConfig.CHOICES, "head": ("drug", "plain"), "device": ("auto", "cpu", "cuda"),
               "amp": ("auto", "bf16", "fp16", "fp32"), "eval_split": ("test", "dev")}
    MINIMUM = {**teacher.TeacherConfig.MINIMUM, "epochs": 1, "batch_size": 1, "max_len": 1, "max_pool": 0,
               "max_steps": 0, "cv": 0, "eval_sample": 0}


# Fixed: no run needs to change these (the measured ones: RESULTS.md, "What was tried").
DROPOUT = 0.1  # the encoder's (in place of its checkpoint's) and the heads'
WEIGHT_DECAY = 0.01
WARMUP = 0.1  # share of the steps
GRAD_CLIP = 1.0
MAX_BATCH_TOKENS = 1024  # a batch with more padded tokens runs as micro-batches of one step: flat memory
MAX_PREDICT_TOKENS = 2048  # prediction's slices: its peak memory set by this, not by the longest sentences
COST_GRID = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]  # the start costs tried on dev
UNITS = {"ade": "pairs", "ner": "entities"}  # what a task predicts and scores
CALIBRATION_SPLIT = {"ade": "dev+neg", "ner": "dev"}  # dev+neg: the ADE-free sentences real text is full of
BOOTSTRAP = 1000  # resamplings of the test sentences for the 95 % intervals
LOG_EVERY = 20  # steps


def run(cfg, splits):
    """Label, train, evaluate -> result rows (also written to out_dir)."""
    t0 = time.time()
    os.makedirs(cfg.out_dir, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    types = data.entity_types(splits["train"]) if cfg.task == "ner" else ["drug", "ade"]
    init, encoder, tokenizer = (None,) * 3 if cfg.eval_teacher_only else open_student(cfg)

    # 1. The teacher labels the pool, and the sentences it is scored on: the gold sets and, where the start
    # cost is chosen at the teacher's precision, dev+neg. Those are never trained on.
    gold_sets = gold_sets_of(cfg, splits)
    at_teacher_precision = cfg.task == "ade" and cfg.teacher == "lexicon" and not cfg.labels
    scored = max(gold_sets.values(), key=len) + (splits["dev+neg"] if at_teacher_precision else [])
    if cfg.labels:
        scored_labels, labels, stats = read_labels(cfg, splits, scored)
        cfg = replace(cfg, teacher="labels")  # the teacher's name in the results
    else:
        scored_labels, labels, stats = ask_teacher(cfg, splits, scored, types if cfg.task == "ner" else None)
        if labels is None:  # --dry_run
            return []
    rows, unanswered = score_teacher(cfg, gold_sets, scored_labels)
    if cfg.eval_teacher_only:  # with what the check took
        return write_results(rows, cfg, {**stats, "teacher_unanswered": unanswered,
                                         "wall_s": round(time.time() - t0, 1)})
    data.write_jsonl_file(labels, os.path.join(cfg.out_dir, "teacher_labels.jsonl"))
    labels = teacher.training_set(labels, cfg.empty_ratio, cfg.seed)

    # 2. The student learns from the teacher's labels; gold dev picks the best epoch.
    device = model.pick_device(cfg.device)
    student = build_student(encoder, cfg, types).to(device)
    meta = {"task": cfg.task, "types": types, "max_len": cfg.max_len, "start_cost": max(cfg.start_cost, 0.0),
            "calibration": None}  # fitted after training
    examples = make_examples(labels, tokenizer, student, meta)
    state = train(student, examples, splits["dev"], tokenizer, init, meta, cfg)

    # 3. The best student, decoding at the start cost chosen on dev, on the test sets.
    student, tokenizer, meta = load_trained(cfg.out_dir, device)
    dtype = model.choose_precision(device, cfg.amp)[0]
    costs = COST_GRID if cfg.start_cost < 0 else [cfg.start_cost]
    teacher_dev = score_rows("teacher", cfg, {"dev+neg": splits["dev+neg"]}, scored_labels)[0]["lenient"] \
        if at_teacher_precision and len(costs) > 1 else {}
    meta["start_cost"], raw_dev = choose_start_cost(student, tokenizer, meta, splits, cfg, dtype, costs,
                                                    teacher_dev.get("precision"))
    calibrate(raw_dev, meta, splits, cfg)
    data.write_atomic(os.path.join(cfg.out_dir, "student", "student.json"), json.dumps(meta, indent=2))
    test = max(gold_sets.values(), key=len)  # holds every gold set
    raw = predict(student, tokenizer, test, meta, dtype, given=test if cfg.given_drugs else None, raw=True)
    predictions = calibrated(raw, meta)
    rows += score_rows("student", cfg, gold_sets, predictions, BOOTSTRAP)
    closest = "test+neg" if "test+neg" in gold_sets else "test"  # the set closest to real text
    next(r for r in rows if (r["system"], r["split"]) == ("student", closest))["confidence"] = \
        confidence_rows(gold_sets[closest], raw, meta, cfg)
    test_ids = {r["id"] for r in splits["test"]}
    data.write_jsonl_file([p for p in predictions if p["id"] in test_ids],
                          os.path.join(cfg.out_dir, "test_predictions.jsonl"))
    notes = {"training_sentences": len(labels), "best_dev_score": round(state["best_score"], 4),
             "start_cost": meta["start_cost"], "steps": state["step"], "device": str(device),
             "teacher_unanswered": unanswered, "wall_s": round(time.time() - t0, 1)}
    return write_results(rows, cfg, notes)


# ----------------------------------------------------------------------------- 1. the teacher's labels

def read_labels(cfg, splits, scored):
    """--labels -> (its labels of the scored sentences, the training labels, no stats), every record checked
    first; a scored sentence is never trained on."""
    records = list(data.iter_sentences(cfg.labels))
    for n, r in enumerate(records, 1):
        evaluate.check_record(r, f"{cfg.labels}: sentence {n} (id {r['id']})")
    scored_texts = {r["id"]: r["text"] for r in scored}
    scored_labels = [r for r in records if scored_texts.get(r["id"]) == r["text"]]
    other_text = sum(scored_texts.get(r["id"], r["text"]) != r["text"] for r in records)
    if other_text:
        print(f"note: {other_text} sentences of {cfg.labels} have the id of a test sentence but another "
              "text: left out (neither scored nor trained on)", file=sys.stderr)
    training = data.without_held_out([r for r in records if r["id"] not in scored_texts],
                                     data.held_out_texts(splits), cfg.labels)
    if not training and not cfg.eval_teacher_only:
        raise SystemExit(f"error: {cfg.labels} holds no sentence to train on (none, or only dev/test "
                         "ones); label sentences of the pool (`python data.py --split=pool`)")
    return scored_labels, training, {}


def ask_teacher(cfg, splits, scored, types):
    """-> the teacher's (labels of the scored sentences, of the pool, stats); None, None after --dry_run."""
    held = data.held_out_texts(splits)
    pool = data.without_held_out(list(data.iter_sentences(cfg.pool)), held, cfg.pool) if cfg.pool else \
        splits["pool"]
    if cfg.max_pool and cfg.teacher != "gold":  # the gold teacher labels every training sentence
        pool = random.Random(cfg.seed).sample(pool, min(cfg.max_pool, len(pool)))
    pool = [] if cfg.eval_teacher_only else pool
    to_score = [] if cfg.teacher == "gold" else data.unlabeled(scored)  # gold on test: the answer key
    labels, stats = teacher.label(to_score + pool, cfg.teacher, cfg, splits["train"],
                                  splits["train"] + splits["negatives"], types)
    if labels is None:
        return None, None, stats
    print(f"{teacher.describe(stats)} ({len(to_score)} scored and {len(pool)} pool sentences)",
          file=sys.stderr)
    return labels[:len(to_score)], labels[len(to_score):], stats


def gold_sets_of(cfg, splits):
    """The sets teacher and student are scored on: --eval_split, its ADE-free sentences with it ("+neg"; not
    with --given_drugs: they have no drug to start from) and its sentences with 2+ drugs (where the ADE head
    must tell drugs apart). --eval_sample=N: N sentences of the widest set, drawn with the seed."""
    name = cfg.eval_split
    widest = splits[name if cfg.task == "ner" or cfg.given_drugs else name + "+neg"]
    if cfg.eval_sample > len(widest):
        raise data.InputError(f"--eval_sample={cfg.eval_sample}: {name} has {len(widest)} sentences to draw "
                              "from; pass at most that (0: all)")
    if cfg.eval_sample:
        drawn = {r["id"] for r in random.Random(cfg.seed).sample(widest, cfg.eval_sample)}
        widest = [r for r in widest if r["id"] in drawn]
    ids = {r["id"] for r in widest}
    gold = [r for r in splits[name] if r["id"] in ids]
    if cfg.task == "ner":
        return {name: gold}
    n_drugs = lambda r: len(data.drug_entities(r["text"], [p["drug"] for p in r["pairs"]]))  # noqa: E731
    return {name: gold, **({} if cfg.given_drugs else {name + "+neg": widest}),
            f"{name} 2+ drugs": [r for r in gold if n_drugs(r) > 1]}


def score_teacher(cfg, gold_sets, scored_labels):
    """-> (the teacher's rows on each gold set it labelled whole, the sentences it gave no answer for)."""
    labelled = {r["id"] for r in scored_labels}  # a labels file may hold test and not test+neg
    whole = {split: gold for split, gold in gold_sets.items() if {r["id"] for r in gold} <= labelled}
    if cfg.labels and whole.keys() != gold_sets.keys():
        print(f"note: {cfg.labels} does not label every sentence of "
              f"{', '.join(gold_sets.keys() - whole.keys())}: no teacher row there", file=sys.stderr)
    unanswered = sum("pairs" not in r and "entities" not in r for r in scored_labels)
    if unanswered:
        print(f"note: the teacher gave no answer for {unanswered} of the {len(scored_labels)} sentences it "
              "is scored on; they count as predicting nothing (rerun to ask them again)", file=sys.stderr)
    rows = score_rows("teacher", cfg, whole, scored_labels, BOOTSTRAP)
    for name in cfg.teacher.split("+") if "+" in cfg.teacher else []:  # each teacher alone, beside the union
        own = [{"id": r["id"], "text": r["text"], **r["teachers"][name]} for r in scored_labels]
        rows += score_rows("teacher", replace(cfg, teacher=name), whole, own, BOOTSTRAP)
    return rows, unanswered


# ----------------------------------------------------------------------------- 2. the student and its loop

def open_student(cfg):
    """-> (the student's starting directory, encoder, tokenizer), read before the teacher is paid."""
    init = cfg.init_from or model.default_encoder()
    if init.startswith("hf:"):
        init = model.download_hf(init, os.path.join("cache", "models"))
    encoder = model.load_encoder(init, DROPOUT)
    if cfg.max_len > encoder.config.max_position_embeddings:
        raise SystemExit(f"error: --max_len={cfg.max_len} is longer than the {init} encoder's "
                         f"{encoder.config.max_position_embeddings} positions; pass at most that")
    return init, encoder, model.load_tokenizer(init)


def build_student(encoder, cfg, types):
    """The one place that decides the student's kind: the drug-centric AdeModel, or the plain NerModel (NER,
    and the ADE ablation). Each owns its loss; its `kind` says which examples and decoder it takes."""
    if cfg.task == "ade" and cfg.head == "drug":
        return model.AdeModel(encoder, DROPOUT)
    return model.NerModel(encoder, len(types), DROPOUT)


def make_examples(records, tokenizer, student, meta):
    """Labelled records -> token-level examples for the student's heads. ADE: a drug string of the labels,
    found in a sentence where no pair of it holds it, becomes an all-O row of the ADE head (a drug need not
    have an adverse event)."""
    encoded = data.encode(tokenizer, [r["text"] for r in records], meta["max_len"])
    if student.kind == "ade":
        known = data.TermList(r["text"][slice(*p["drug"])] for r in records for p in r.get("pairs", []))
        examples = [data.ade_example(enc, r, known.spans(r["text"])) for enc, r in zip(encoded, records)]
        n_free = sum(max(d["labels"]) <= 0 for x in examples for d in x["drugs"])
        print(f"drug negatives: {n_free} ADE-head rows of drugs without an adverse event", file=sys.stderr)
    else:
        examples = [data.ner_example(enc, r if meta["task"] == "ner" else data.as_entities(r), meta["types"])
                    for enc, r in zip(encoded, records)]
    for key, what in (("off_boundary", "do not fall on token boundaries (tagged to the tokens they touch)"),
                      ("past_cut", "reach past the --max_len cut (tagged up to it)")):
        if n := sum(x[key] for x in examples):
            print(f"note: {n} labelled spans {what}", file=sys.stderr)
    return examples


def lr_scale(step, total, warmup_fraction=WARMUP):
    """The share of the peak learning rate at `step`: linear warmup, then linear decay to 0."""
    warmup = max(1, int(warmup_fraction * total))
    return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))


def train(student, examples, dev, tokenizer, tokenizer_dir, meta, cfg):
    """The handwritten loop (AdamW, warmup and linear decay, clipping, AMP), saving the student with the best
    dev score to out_dir/student. -> the training state."""
    device = next(student.parameters()).device
    decayed = [p for p in student.parameters() if p.ndim >= 2]
    others = [p for p in student.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": WEIGHT_DECAY},
                                   {"params": others, "weight_decay": 0.0}],
                                  lr=cfg.lr, fused=device.type == "cuda")
    dtype, use_scaler, why = model.choose_precision(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    print(f"precision: {model.precision_name(dtype)}"
          f"{' with GradScaler' if use_scaler else ''} on {device} ({why})", file=sys.stderr)
    lengths = [len(x["ids"]) for x in examples]
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = min(cfg.max_steps or math.inf, steps_per_epoch * cfg.epochs)
    schedule = [len(examples), cfg.batch_size, cfg.epochs, cfg.max_steps, cfg.seed]
    last = os.path.join(cfg.out_dir, "last")
    resumed = model.load_checkpoint(last, student, optimizer, scaler) if cfg.resume else None
    if resumed and resumed[1].get("schedule") != schedule:
        raise SystemExit(f"error: {resumed[0]} was made with (sentences, --batch_size, --epochs, "
                         f"--max_steps, --seed) = {resumed[1].get('schedule')}, not {schedule}; resume with "
                         "the same options, or start afresh without --resume")
    if cfg.resume:
        print(f"resumed from {resumed[0]} at step {resumed[1]['step']}" if resumed else
              f"note: --resume, but {last} holds no checkpoint: starting from step 0", file=sys.stderr)
    # an epoch counts as done once it is evaluated: a kill during its evaluation resumes into that evaluation
    state = resumed[1] if resumed else {"step": 0, "evaluated": 0, "best_score": -1.0, "history": [],
                                        "schedule": schedule}
    print(f"training: {len(examples)} sentences, {cfg.epochs} epochs, {total} steps of {cfg.batch_size}",
          file=sys.stderr)

    def save(path, resumable):  # resumable: also the optimizer and scaler, the RNGs, the step
        model.save_student(student, path, tokenizer_dir, meta, resumable and (optimizer, scaler, state))
        return state["step"]

    t_log, logged = time.time(), state["step"]
    for epoch in range(state["evaluated"], cfg.epochs):
        batches = data.length_batches(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch)
        student.train()
        for batch in batches[state["step"] - epoch * steps_per_epoch:]:
            if state["step"] >= total:
                break
            micro_batches = [{k: torch.from_numpy(v).to(device) for k, v in
                              data.collate([examples[i] for i in part]).items()}
                             for part in data.split_by_tokens(batch, lengths, MAX_BATCH_TOKENS)]
            # Normalise by the real labels of the whole batch, not per micro-batch.
            n_labels = sum(int((b["labels"] != -100).sum() + (b["ade_labels"] != -100).sum())
                           for b in micro_batches)
            loss_sum = 0.0
            for micro_batch in micro_batches:
                with model.autocast(device, dtype):
                    loss = student.loss(micro_batch)
                scaler.scale(loss / n_labels).backward()
                loss_sum += loss.item()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), GRAD_CLIP).item()
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_scale(state["step"], total)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["history"].append(round(loss_sum / n_labels, 5))
            if state["step"] % LOG_EVERY == 0 or state["step"] == total:
                dt, steps = time.time() - t_log, state["step"] - logged
                print(f"step {state['step']}/{total} | loss {loss_sum / n_labels:.4f} | lr "
                      f"{optimizer.param_groups[0]['lr']:.2e} | grad norm {grad_norm:.2f} | "
                      f"{1000 * dt / steps:.0f} ms/step | {steps * cfg.batch_size / dt:.1f} sentences/s",
                      file=sys.stderr)
                t_log, logged = time.time(), state["step"]
        if state["step"] == (epoch + 1) * steps_per_epoch or state["step"] >= total:  # the end of an epoch
            save(last, resumable=True)  # first the steps: a kill during the evaluation resumes into it
            predicted = predict(student, tokenizer, dev, meta, dtype)
            dev_row = score_rows("student", cfg, {"dev": dev}, predicted)[0]
            score = dev_score(dev_row)
            best = score > state["best_score"]
            print(f"epoch {epoch + 1}: dev lenient F1 {dev_row['lenient']['f1']:.4f} strict F1 "
                  f"{dev_row['strict']['f1']:.4f}{' (best so far: saved)' if best else ''}", file=sys.stderr)
            if best:
                state["best_score"] = score
                save(os.path.join(cfg.out_dir, "student"), resumable=False)
            state["evaluated"] = epoch + 1  # in last/ from the next save on; until then a resume re-evaluates
            t_log, logged = time.time(), state["step"]  # the log's rates count training alone
        if state["step"] >= total:
            break
    return state


# ----------------------------------------------------------------------------- 3. prediction and scoring

def load_trained(out_dir, device="cpu"):
    """A trained out_dir -> (student, tokenizer, meta): what `predict` needs to decode as the run's own test
    predictions were (task, types, max_len, start cost, calibration)."""
    path = model.saved_dir(os.path.join(out_dir, "student"))
    if not os.path.exists(os.path.join(path, "student.json")):
        raise FileNotFoundError(f"{out_dir} holds no trained student (student/student.json); train one "
                                f"first: python ade_distill.py --out_dir={out_dir}")
    student, meta = model.load_student(path)
    if "calibration" not in meta:
        print(f"note: {path} was saved without a calibration: its confidences are the model's own marginals",
              file=sys.stderr)
    return student.to(device), model.load_tokenizer(path), meta


@torch.no_grad()
def predict(student, tokenizer, records, meta, dtype=None, given=None, costs=None, raw=False):
    """Records ({"id", "text"}) -> records with "pairs" (ADE) or "entities" (NER), each with its text and
    confidence (calibrated and thresholded by meta; the model's own with `raw`). `given`: records whose drug
    spans replace the drug head's. `costs`: one encoder pass decoded at each start cost -> a list per cost."""
    student.eval()
    device = next(student.parameters()).device
    decode = ade_fields if student.kind == "ade" else ner_fields
    encoded = data.encode(tokenizer, [r["text"] for r in records], meta["max_len"])
    lengths = [len(enc["ids"]) for enc in encoded]
    grid = [max(meta.get("start_cost", 0.0), 0.0)] if costs is None else costs
    outs = [[{"id": r["id"], "text": r["text"]} for r in records] for _ in grid]
    for batch in data.length_batches(lengths, 64):
        padded = data.collate([{"ids": encoded[i]["ids"]} for i in batch])
        # Slices of at most MAX_PREDICT_TOKENS padded tokens, each padded to the whole batch's length: a
        # sentence's result (in bf16 too) depends on its padded length, not on the rows beside it.
        for rows in data.split_by_tokens(range(len(batch)), [lengths[i] for i in batch], MAX_PREDICT_TOKENS):
            ids = [batch[row] for row in rows]
            input_ids, mask = (torch.from_numpy(padded[key][rows[0]:rows[-1] + 1]).to(device)
                               for key in ("input_ids", "attention_mask"))
            drugs = [[p["drug"] for p in given[i]["pairs"]] for i in ids] if given else None
            with model.autocast(device, dtype):
                hidden = student.encoder(input_ids, mask)  # (B, T, D): once, whatever the costs
                for out, cost in zip(outs, grid):
                    fields = decode(student, hidden, [encoded[i] for i in ids],
                                    [records[i]["text"] for i in ids], meta, cost, drugs)
                    for i, row in zip(ids, fields):
                        out[i].update(row)
    outs = outs if raw else [calibrated(out, meta) for out in outs]
    return outs[0] if costs is None else outs


def calibrated(records, meta):
    """Records with the model's own confidences -> meta's calibration applied (monotone: the ranking stays),
    units below meta["min_confidence"] dropped, to 4 decimals (the encoder's last bits vary with a batch)."""
    key = UNITS[meta["task"]]
    raw = [u["confidence"] for r in records for u in r[key]]
    confidences = iter(evaluate.platt(raw, meta.get("calibration")).tolist())  # one numpy call for them all
    out = []
    for r in records:
        units = [{**u, "confidence": round(next(confidences), 4)} for u in r[key]]
        out.append({**r, key: [u for u in units if u["confidence"] >= meta.get("min_confidence", 0.0)]})
    return out


def ner_fields(student, hidden, encodings, texts, meta, cost, given_drugs=None):
    """The plain head's spans -> per sentence its entities, or (the ADE ablation) every ADE paired with every
    drug, the pair's confidence the product of its spans'."""
    rows, log_probs = [], model.log_softmax(student.head(hidden))  # (B, T, 2K+1)
    for text, spans in zip(texts, model.decode_batch(encodings, log_probs, cost)):
        if meta["task"] == "ner":
            rows.append({"entities": [{"span": [s, e], "type": meta["types"][k], "text": text[s:e],
                                       "confidence": p} for s, e, k, p in spans]})
        else:
            drugs, ades = ([(s[:2], s[3]) for s in spans if s[2] == k] for k in (0, 1))
            rows.append({"pairs": [pair(text, d, a, pd * pa) for d, pd in drugs for a, pa in ades]})
    return rows


def ade_fields(student, hidden, encodings, texts, meta, cost, given_drugs=None):
    """Hidden states -> drug spans (the head's or the given ones) -> drug entities -> the ADE head once for
    all of them -> per sentence its pairs, confidence P(drug) (its best mention's) x P(event | drug)."""
    drugs = []  # (row in the batch, all mentions of one drug, its confidence)
    decoded = [[(s, e, 0, 1.0) for s, e in spans] for spans in given_drugs] if given_drugs else \
        model.decode_batch(encodings, model.log_softmax(student.drug_head(hidden)), cost)
    for row, (text, spans) in enumerate(zip(texts, decoded)):
        for key, mentions in data.drug_entities(text, [span[:2] for span in spans]).items():
            drugs.append((row, mentions, max(p for s, e, _, p in spans if text[s:e].lower() == key)))
    token_mask = np.zeros((len(drugs), hidden.shape[1]), dtype=np.float32)
    for m, (row, mentions, _) in enumerate(drugs):
        token_mask[m, data.token_mask(encodings[row], mentions)] = 1.0
    sentence = torch.tensor([row for row, _, _ in drugs], dtype=torch.long, device=hidden.device)
    ade_logits = student.ade_logits(hidden, sentence, torch.from_numpy(token_mask).to(hidden.device))
    rows = [{"pairs": []} for _ in encodings]
    events = model.decode_batch([encodings[row] for row, _, _ in drugs], model.log_softmax(ade_logits), cost)
    for (row, mentions, drug_p), spans in zip(drugs, events):
        rows[row]["pairs"] += [pair(texts[row], mentions[0], (s, e), drug_p * p) for s, e, _, p in spans]
    return rows


def pair(text, drug, ade, confidence):
    return {"drug": list(drug), "ade": list(ade), "drug_text": text[slice(*drug)],
            "ade_text": text[slice(*ade)], "confidence": confidence}


def score_rows(system, cfg, gold_sets, predicted, bootstrap=0):
    """Predictions scored on each gold set -> result rows (NER: also per type; bootstrap: 95 % intervals)."""
    by_id = {r["id"]: r for r in predicted}
    return [{"system": system, "teacher": cfg.teacher, "split": split, "given_drugs": cfg.given_drugs,
             **evaluate.score(gold, [by_id[r["id"]] for r in gold], UNITS[cfg.task],
                              data.entity_types(gold) if cfg.task == "ner" else None, bootstrap)}
            for split, gold in gold_sets.items()]


def dev_score(row):
    """The dev figure that picks the epoch and the start cost: strict and lenient F1 alike."""
    return (row["strict"]["f1"] + row["lenient"]["f1"]) / 2


def choose_start_cost(student, tokenizer, meta, splits, cfg, dtype, costs, teacher_precision=None):
    """The start cost of `costs` with the best dev score (given the teacher's lenient precision on dev+neg,
    the best of those as precise there), from one encoder pass over the calibration split (it holds
    dev). -> (the cost, the split's predictions at it with the model's own confidences)."""
    name = CALIBRATION_SPLIT[cfg.task]
    outs = predict(student, tokenizer, splits[name], meta, dtype, costs=costs, raw=True)
    rows = [score_rows("student", cfg, {s: splits[s] for s in ("dev", name)}, out) for out in outs]
    scores = [dev_score(row[0]) for row in rows]
    print("dev score by start cost: " + ", ".join(f"{c:g}: {100 * s:.2f}" for c, s in zip(costs, scores)),
          file=sys.stderr)
    best = int(np.argmax(scores))
    if teacher_precision is not None:
        precisions = [row[-1]["lenient"]["precision"] for row in rows]
        print(f"{name} lenient precision by start cost (the teacher's: {100 * teacher_precision:.2f}): " +
              ", ".join(f"{c:g}: {100 * p:.2f}" for c, p in zip(costs, precisions)), file=sys.stderr)
        best = best_at_precision(scores, precisions, teacher_precision)
    return costs[best], outs[best]


def best_at_precision(scores, precisions, floor):
    """The index of the best score among those whose precision reaches `floor` (if none does, of the best
    score: a note says so)."""
    if not any(p >= floor for p in precisions):
        print("note: no start cost reaches the teacher's precision on dev+neg: chosen on the dev score alone",
              file=sys.stderr)
        return int(np.argmax(scores))
    return int(np.argmax([s if p >= floor else -np.inf for s, p in zip(scores, precisions)]))


def calibrate(raw, meta, splits, cfg):
    """Fit meta's calibration to `raw`, the calibration split's predictions (a unit correct where it overlaps
    a gold one); --target_precision: the lowest --min_confidence (steps of 0.01) whose lenient precision
    there reaches it."""
    name, level = CALIBRATION_SPLIT[cfg.task], UNITS[cfg.task]
    meta["calibration"] = evaluate.fit_platt(*evaluate.confidence_and_correct(splits[name], raw, level))
    meta["min_confidence"] = cfg.min_confidence
    if cfg.target_precision:
        lenient = lenient_at(splits[name], raw, meta, cfg, np.round(np.arange(0, 1, 0.01), 2))
        reached = [t for t, m in lenient.items() if m["precision"] >= cfg.target_precision]
        best = reached[0] if reached else max(lenient, key=lambda t: lenient[t]["precision"])
        if reached:
            meta["min_confidence"] = best
            print(f"--min_confidence={best:g}: lenient precision {lenient[best]['precision']:.4f}, recall "
                  f"{lenient[best]['recall']:.4f} on {name}", file=sys.stderr)
        else:
            print(f"note: no threshold reaches --target_precision={cfg.target_precision:g} on {name} (at "
                  f"most {lenient[best]['precision']:.4f}, at {best:g}): "
                  f"--min_confidence stays {cfg.min_confidence:g}", file=sys.stderr)


def lenient_at(gold, raw, meta, cfg, thresholds):
    """-> {threshold: lenient figures on `gold` of `raw` calibrated by meta, kept from the threshold up}."""
    figures = {}
    for t in thresholds:
        kept = calibrated(raw, {**meta, "min_confidence": t})
        figures[float(t)] = score_rows("student", cfg, {"": gold}, kept)[0]["lenient"]
    return figures


def confidence_rows(gold, raw, meta, cfg):
    """The student on `gold` by confidence: the calibration error before and after, precision and recall
    from thresholds 0.05 to 0.95 and the chosen one up, the average precision of the ranking."""
    raw_confidences, correct = evaluate.confidence_and_correct(gold, raw, UNITS[cfg.task])
    confidences = evaluate.platt(raw_confidences, meta["calibration"])
    n_gold = sum(len(evaluate.units(r, UNITS[cfg.task])) for r in gold)
    thresholds = [*np.round(np.arange(0.05, 1, 0.05), 2), meta["min_confidence"]]
    return {"ece_raw": evaluate.calibration_error(raw_confidences, correct),
            "ece": evaluate.calibration_error(confidences, correct),
            "at_threshold": {f"{t:g}": {k: m[k] for k in ("precision", "recall")}
                             for t, m in lenient_at(gold, raw, meta, cfg, thresholds).items()},
            "average_precision": evaluate.average_precision(confidences, correct, n_gold),
            "min_confidence": meta["min_confidence"]}


def write_results(rows, cfg, notes):
    """results.json (the rows), results.md (their table and the run's notes), and the table on stdout."""
    table = evaluate.markdown_table(rows) + "\n\n" + " ".join(f"{k}={v}" for k, v in notes.items())
    data.write_atomic(os.path.join(cfg.out_dir, "results.json"), json.dumps(rows, indent=2))
    data.write_atomic(os.path.join(cfg.out_dir, "results.md"), table + "\n")
    print("\n" + table)
    return rows


def cross_validate(cfg):
    """The k-fold protocol: one run per fold into out_dir/fold{k}; then cv_results.md, the student's test F1
    on every fold and their mean. -> those F1s."""
    scores = []
    for fold in range(cfg.cv):
        rows = run(replace(cfg, out_dir=os.path.join(cfg.out_dir, f"fold{fold}")),
                   data.load_splits(data.data_root(cfg.data_dir), cv=cfg.cv, fold=fold))
        row = next(r for r in rows if (r["system"], r["split"]) == ("student", "test"))
        scores.append([100 * row[m]["f1"] for m in ("strict", "lenient")])
    lines = ["| fold | strict F1 | lenient F1 |", "| ---: | ---: | ---: |"]
    lines += [f"| {k} | {s:.2f} | {l:.2f} |" for k, (s, l) in enumerate(scores)]
    mean, sd = np.mean(scores, 0), np.std(scores, 0, ddof=1) if len(scores) > 1 else [0.0, 0.0]
    lines.append(f"| mean ± sd | {mean[0]:.2f} ± {sd[0]:.2f} | {mean[1]:.2f} ± {sd[1]:.2f} |")
    data.write_atomic(os.path.join(cfg.out_dir, "cv_results.md"), "\n".join(lines) + "\n")
    print(f"\n{cfg.cv}-fold protocol, the student on each test fold (teacher {cfg.teacher}):", *lines,
          sep="\n")
    return scores


# ============================================================================= operations: the command line,
# its checks, prediction from it

def main(argv):
    cfg = Config.parse(argv)
    check_config(cfg)
    if cfg.predict or cfg.predict_file:
        return predict_command(cfg)
    results = [os.path.join(f"fold{k}", "results.json") for k in range(cfg.cv)] or ["results.json"]
    finished = [f for f in results if os.path.exists(os.path.join(cfg.out_dir, f))]
    if finished and not (cfg.overwrite or cfg.resume):
        raise SystemExit(f"error: {cfg.out_dir} holds a finished run ({finished[0]}); pass another "
                         "--out_dir, or --overwrite=true to replace it")
    print(json.dumps(asdict(cfg), indent=1), file=sys.stderr)
    # the API key is never in cfg: only the variable's name
    data.write_atomic(os.path.join(cfg.out_dir, "config.json"), json.dumps(asdict(cfg), indent=2))
    if cfg.cv:
        return cross_validate(cfg)
    return run(cfg, data.load_splits(data.data_root(cfg.data_dir), cfg.dataset))


def cli(argv):
    """`main` with a user's errors (bad files, unreachable servers) as one `error:` line; any other exception
    is a bug and keeps its traceback."""
    try:
        return main(argv)
    except (teacher.TeacherError, data.InputError, model.CheckpointError, evaluate.RecordError, OSError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: the teacher's replies so far are cached and --predict_out resumes after its "
                 "last line: rerun the same command (a training run with --resume=true, from its last epoch)")


def check_config(cfg):
    """The checks that involve several options, before any data is read or any request sent (each option's
    own values are checked as it is parsed, by Config.parse; files, as they are opened)."""
    teacher.check_config(cfg)
    if cfg.empty_ratio < 0 and cfg.empty_ratio != -1:
        raise SystemExit(f"error: --empty_ratio={cfg.empty_ratio:g}: 0 or more, or -1 to keep every sentence "
                         "the teacher found nothing in")
    if not 0 <= cfg.min_confidence <= 1 or not 0 <= cfg.target_precision <= 1:
        raise SystemExit(f"error: --min_confidence={cfg.min_confidence:g} --target_precision="
                         f"{cfg.target_precision:g}: each between 0 and 1 (--target_precision=0: none)")
    if cfg.predict and cfg.predict_file:
        raise SystemExit("error: pass --predict=TEXT or --predict_file=FILE, not both")
    if (cfg.eval_split != "test" or cfg.eval_sample) and not cfg.eval_teacher_only:
        raise SystemExit("error: --eval_split and --eval_sample score the teacher alone: add "
                         "--eval_teacher_only=true (a student is always scored on all of test)")
    if cfg.target_precision and (cfg.predict or cfg.predict_file):
        raise SystemExit("error: --target_precision is for a run; to predict, pass --min_confidence=C")
    if (cfg.predict_out or cfg.shard) and not cfg.predict_file:
        raise SystemExit("error: --predict_out and --shard go with --predict_file=FILE")
    data.parse_shard(cfg.shard)
    if cfg.given_drugs and (cfg.task, cfg.head) != ("ade", "drug"):
        raise SystemExit("error: --given_drugs is for the drug-centric head of the ADE task (--task=ade "
                         "--head=drug)")
    if cfg.cv and cfg.task != "ade":
        raise SystemExit("error: --cv is the ADE corpus's protocol (--task=ade)")
    out = cfg.predict_out  # one that cannot be opened fails as it is, before any prediction
    if out and os.path.exists(out) and os.path.exists(cfg.predict_file) and \
            os.path.samefile(out, cfg.predict_file):
        raise SystemExit(f"error: --predict_out={out} is the input file; name another")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device=cuda, but torch sees no CUDA device; use --device=cpu (or auto)")


def predict_command(cfg):
    """--predict / --predict_file: the trained student of out_dir -> JSON Lines, one a sentence, in the
    input's order (data.map_jsonl: a chunk at a time, resumable in --predict_out, --shard=K/N)."""
    student, tokenizer, meta = load_trained(cfg.out_dir, model.pick_device(cfg.device))
    dtype, _, why = model.choose_precision(next(student.parameters()).device, cfg.amp)
    meta["start_cost"] = cfg.start_cost if cfg.start_cost >= 0 else meta.get("start_cost", 0.0)
    meta["min_confidence"] = cfg.min_confidence or meta.get("min_confidence", 0.0)
    if cfg.predict:
        print(json.dumps(predict(student, tokenizer, [{"id": "1", "text": cfg.predict}], meta, dtype)[0]))
        return
    print(f"precision {model.precision_name(dtype)} ({why})", file=sys.stderr)
    data.map_jsonl(cfg.predict_file, lambda chunk: predict(student, tokenizer, chunk, meta, dtype),
                   cfg.predict_out, cfg.shard)


if __name__ == "__main__":
    cli(sys.argv[1:])
