"""The whole pipeline on a tiny random BERT (seconds on a CPU): outputs, resume, prediction, options."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import ade_distill
import teacher


def args(tiny_bert_dir, data_dir, out_dir, *extra):
    return [f"--init_from={tiny_bert_dir}", f"--data_dir={data_dir}", f"--out_dir={out_dir}", "--max_pool=64",
            "--epochs=3", "--batch_size=8", "--lr=1e-3", "--log_every=4", "--empty_ratio=-1", *extra]


@pytest.fixture(scope="module")
def tiny_run(tiny_bert_dir, data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, out))
    return out, rows


def test_pipeline_writes_every_output(tiny_run):
    out, rows = tiny_run
    assert [(r["system"], r["split"]) for r in rows] == [(system, split) for system in ("teacher", "student")
                                                        for split in ("test", "test+neg", "test 2+ drugs")]
    assert json.load(open(os.path.join(out, "results.json"))) == rows
    for r in rows:
        assert r["teacher"] == "lexicon"
        for m in ("strict", "lenient"):
            assert set(r[m]) == {"precision", "recall", "f1", "tp", "n_pred", "n_gold", "ci95"}
    assert rows[0]["strict"]["n_gold"] == rows[3]["strict"]["n_gold"] == 674
    assert 40 < rows[2]["strict"]["n_gold"] < 200 and "ci95" in rows[3]["lenient"]
    assert "| teacher | lexicon | test |" in open(os.path.join(out, "results.md")).read()
    predictions = [json.loads(line) for line in open(os.path.join(out, "test_predictions.jsonl"))]
    assert len(predictions) == 428 and all({"id", "text", "pairs"} <= set(p) for p in predictions)
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["max_pool"] == 64 and config["drug_negatives"] is True
    assert config["start_cost_on"] == "teacher_precision", "--start_cost_on=auto with the lexicon teacher"
    assert len(open(os.path.join(out, "teacher_labels.jsonl")).readlines()) == 64
    student = os.path.join(out, "student")
    assert {"config.json", "model.safetensors", "heads.safetensors", "student.json", "tokenizer.json"} <= set(os.listdir(student))
    assert json.load(open(os.path.join(student, "student.json")))["start_cost"] in ade_distill.COST_GRID  # chosen on dev


def test_loss_falls(tiny_run):
    history = torch.load(os.path.join(tiny_run[0], "last", "train_state.pt"), weights_only=True)["history"]
    assert len(history) == 24  # 64 sentences / 8 per batch x 3 epochs
    assert sum(history[-4:]) / 4 < 0.8 * sum(history[:4]) / 4, history


def test_predict_from_command_line(tiny_run):
    out = subprocess.run([sys.executable, "ade_distill.py", f"--out_dir={tiny_run[0]}",
                          "--predict=Intravenous azithromycin-induced ototoxicity."],
                         capture_output=True, text=True, check=True)
    record = json.loads(out.stdout)
    assert record["text"] == "Intravenous azithromycin-induced ototoxicity."
    for p in record["pairs"]:
        assert p["drug_text"] == record["text"][slice(*p["drug"])]


def test_predict_file_of_plain_lines(tiny_run, tmp_path):
    (tmp_path / "in.txt").write_text("Aspirin-induced asthma.\n\nHeparin caused bleeding.\n")
    out = subprocess.run([sys.executable, "ade_distill.py", f"--out_dir={tiny_run[0]}",
                          f"--predict_file={tmp_path / 'in.txt'}"], capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["id"], r["text"]) for r in records] == [("1", "Aspirin-induced asthma."), ("3", "Heparin caused bleeding.")]


def test_ten_fold_protocol_trains_on_the_whole_training_part(tiny_bert_dir, data_dir, tmp_path, capsys):
    folds = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path, "--cv=10", "--cv_folds=0,7", "--teacher=gold",
                                  "--epochs=1", "--max_steps=2", "--empty_ratio=0", "--bootstrap=0"))
    out = capsys.readouterr()
    assert "10-fold protocol" in out.out and f"| mean ± sd | {(folds[0][0] + folds[1][0]) / 2:.2f} ± " in out.out
    for k in (0, 7):  # the gold teacher ignores --max_pool=64: every training sentence of the fold is used
        n = len(ade_distill.data.ade_cv_splits(data_dir, 10, k)["train"])
        assert f"training set: {n} sentences with teacher labels + 0 without" in out.err
        assert (tmp_path / f"fold{k}" / "results.json").exists()
    assert (tmp_path / "cv_results.md").read_text().count("\n") == 2 + 2 + 1
    assert json.load(open(tmp_path / "config.json"))["start_cost_on"] == "dev", "--start_cost_on=auto with the gold teacher"


def test_labels_and_pool_files_never_let_a_test_sentence_in(tiny_run, tiny_bert_dir, data_dir, ade_splits,
                                                            tmp_path, capsys):
    labels = [json.loads(line) for line in open(os.path.join(tiny_run[0], "teacher_labels.jsonl"))][:30]
    leak = {**ade_splits["test"][0], "id": "elsewhere:0"}  # a test sentence under another id
    failed = {"id": "failed:0", "text": "No answer came for this one."}  # a failed reply: no "pairs"
    data_file = tmp_path / "labels.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in labels + [leak, failed]))
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path / "labels", f"--labels={data_file}",
                                 "--epochs=1", "--bootstrap=0"))
    err = capsys.readouterr().err
    assert [(r["system"], r["teacher"]) for r in rows] == [("student", "labels")] * 3  # the file has no test labels
    # with the test split's sentences (not the ADE-free ones): teacher rows on test and test 2+ drugs only
    test_file = tmp_path / "with_test.jsonl"
    test_file.write_text(data_file.read_text() + "".join(json.dumps(r) + "\n" for r in ade_splits["test"]))
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path / "with_test", f"--labels={test_file}",
                                 "--epochs=1", "--bootstrap=0", "--start_cost_on=dev+neg"))
    teacher_rows = {r["split"]: r for r in rows if r["system"] == "teacher"}
    assert sorted(teacher_rows) == ["test", "test 2+ drugs"] and teacher_rows["test"]["lenient"]["f1"] == 1.0
    with_test_err = capsys.readouterr().err
    assert "labels from " + str(test_file) + ": 31 training sentences, 428 test sentences" in with_test_err
    assert "dev+neg score by start cost: 0: " in with_test_err  # chosen on dev and its ADE-free sentences
    with pytest.raises(SystemExit, match="teacher_precision: .* does not label every dev\\+neg sentence"):
        ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path / "no_dev", f"--labels={test_file}",
                              "--start_cost_on=teacher_precision"))
    assert not os.path.exists(tmp_path / "no_dev" / "student"), "refused before any training"
    assert "1 " + str(data_file) + " sentences also occur in dev/test and are left out" in err
    assert "1 sentences have no teacher answer" in err and "training set: " in err
    n_labelled = sum(bool(r["pairs"]) for r in labels)
    assert f"training set: {n_labelled} sentences with teacher labels + {30 - n_labelled} without" in err

    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in labels + [leak]))
    ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path / "pool", f"--pool={pool_file}", "--epochs=1",
                          "--bootstrap=0", "--start_cost_on=teacher_precision"))
    err = capsys.readouterr().err
    assert "1 " + str(pool_file) + " sentences also occur in dev/test" in err
    assert "(4236 test and dev+neg and 30 pool sentences)" in err  # test+neg 2,129 + dev+neg 2,107
    assert "dev score by start cost: " in err and "dev+neg lenient precision by start cost (the teacher's: " in err
    assert len(open(tmp_path / "pool" / "teacher_labels.jsonl").readlines()) == 30


def test_training_set_keeps_every_labelled_sentence_and_a_share_of_empty_ones():
    labels = [{"id": str(i), "text": "t", "pairs": [{"drug": [0, 1], "ade": [0, 1]}] if i < 10 else []}
              for i in range(100)]
    for ratio, n_empty in ((0, 0), (0.5, 5), (2, 20), (-1, 90)):
        kept = ade_distill.training_set(labels, ratio, seed=0)
        assert [r["id"] for r in kept[:10]] == [str(i) for i in range(10)] and len(kept) == 10 + n_empty
    assert ade_distill.training_set(labels, 0.5, seed=0) == ade_distill.training_set(labels, 0.5, seed=0)


def test_given_drugs_uses_the_gold_drug_spans(tiny_run, ade_splits):
    student, meta = ade_distill.model.load_student(os.path.join(tiny_run[0], "student"))
    cfg = ade_distill.Config()
    test = ade_splits["test"][:20]
    predicted = ade_distill.predict(student, ade_distill.model.load_tokenizer(os.path.join(tiny_run[0], "student")),
                                    test, cfg, torch.device("cpu"), given=test)
    for p, g in zip(predicted, test):
        gold_drugs = {g["text"][slice(*x["drug"])].lower() for x in g["pairs"]}
        assert {p["text"][slice(*x["drug"])].lower() for x in p["pairs"]} <= gold_drugs


def test_start_cost_decodes_one_encoder_pass_several_ways(tiny_run, ade_splits):
    student, _ = ade_distill.model.load_student(os.path.join(tiny_run[0], "student"))
    tokenizer = ade_distill.model.load_tokenizer(os.path.join(tiny_run[0], "student"))
    cfg, test = ade_distill.Config(start_cost=0.0), ade_splits["test"][:40]
    by_bias = ade_distill.predict(student, tokenizer, test, cfg, torch.device("cpu"), costs=[0.0, 100.0])
    assert by_bias[0] == ade_distill.predict(student, tokenizer, test, cfg, torch.device("cpu"))
    assert any(r["pairs"] for r in by_bias[0]) and not any(r["pairs"] for r in by_bias[1])  # O always wins


def test_start_cost_drops_weak_spans_whole_never_cuts_them():
    # tags O, B, I; a sure start, then two unsure inside tokens. Cost 1: O B I I scores log(.9 * .7 * .55 * .55)
    # - 1 = -2.66 against O B I O -2.98 and O O O O -3.55, so the span is kept whole; a bonus of 1 for O at every
    # token (the earlier O bias) would cut it to O B O O (0.71 against O B I I -0.66). Cost 2: O O O O wins.
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.4, 0.05, 0.55], [0.4, 0.05, 0.55]])
    decode = lambda cost: ade_distill.data.viterbi_bio(ade_distill.log_softmax(probs.log(), cost))  # noqa: E731
    assert decode(0.0) == decode(1.0) == [0, 1, 2, 2]
    assert decode(2.0) == [0, 0, 0, 0]
    o_bonus = (probs.log() + torch.tensor([1.0, 0.0, 0.0])).numpy()
    assert ade_distill.data.viterbi_bio(o_bonus) == [0, 1, 0, 0]


def test_resume_after_a_kill_reaches_the_same_weights(tiny_bert_dir, data_dir, tmp_path):
    common = ["--max_pool=160", "--epochs=2", "--save_every=2"]
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, "ade_distill.py", *args(tiny_bert_dir, data_dir, whole, *common)],
                   check=True, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "ade_distill.py", *args(tiny_bert_dir, data_dir, cut, *common)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # generous: a busy machine is slow to reach its first checkpoint
    while not (cut / "last" / "train_state.pt").exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (cut / "last").exists():  # the worst moment to be killed: between the two renames of a checkpoint swap
        shutil.rmtree(cut / "last.old", ignore_errors=True)
        os.replace(cut / "last", cut / "last.old")
    saved_at = cut / "last.old"
    step = torch.load(saved_at / "train_state.pt", weights_only=True)["step"]
    assert step < 40, "the run must be cut before its 40 steps"
    resumed = subprocess.run([sys.executable, "ade_distill.py", *args(tiny_bert_dir, data_dir, cut, *common),
                              "--resume=true"], capture_output=True, text=True, check=True)
    assert f"resumed from {saved_at} at step {step}" in resumed.stderr
    for name in ("model.safetensors", "heads.safetensors"):
        a, b = load_file(str(whole / "last" / name)), load_file(str(cut / "last" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert json.load(open(whole / "results.json")) == json.load(open(cut / "results.json"))


@pytest.mark.parametrize("option, message", [
    ("--batch_size=0", "--batch_size=0: must be at least 1"), ("--epochs=0", "--epochs=0: must be at least 1"),
    ("--grad_accum=0", "--grad_accum=0: must be at least 1"), ("--log_every=0", "--log_every=0: must be at least 1"),
    ("--cv=2", "--cv=2: the protocol needs at least 3 folds"), ("--device=gpu", "--device=gpu: choose one of"),
    ("--head=Plain", "--head=Plain: choose one of drug, interaction, plain"), ("--task=nre", "--task=nre: choose"),
    ("--api_key_env=sk-abc123", "--api_key_env takes the NAME"), ("--teacher=gpt", "--teacher=gpt: choose one of"),
    ("--json_mode=yes", "--json_mode=yes: choose one of true, false, schema"),
    ("--max_cost=5", "--max_cost needs the prices"), ("--dry_run=true", "--dry_run=true is for --teacher=llm"),
    ("--labels=/nonexistent.jsonl", "--labels=/nonexistent.jsonl: no such file"),
    ("--start_cost_on=test", "--start_cost_on=test: choose one of auto, dev, dev+neg, teacher_precision"),
    ("--teacher=gold --start_cost_on=teacher_precision", "--start_cost_on=teacher_precision: the gold teacher's precision"),
    ("--init_from=/nonexistent", "--init_from=/nonexistent: no config.json there"),
    ("--task=ner --start_cost_on=dev+neg", "--start_cost_on=dev+neg is for --task=ade")])
def test_bad_options_stop_before_any_work(option, message, tmp_path):
    out = subprocess.run([sys.executable, "ade_distill.py", *option.split(), f"--out_dir={tmp_path}", "--data_dir=/nonexistent"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: {message}"), out.stderr
    assert "sk-abc123" not in out.stderr and not (tmp_path / "config.json").exists()


def test_a_kill_during_the_end_of_epoch_evaluation_resumes_into_it(tiny_bert_dir, data_dir, tmp_path):
    # 160 sentences / 8 = 20 steps: the periodic checkpoint at step 20 is written before epoch 1's
    # evaluation. A kill during that evaluation leaves exactly this state: step 20, no epoch evaluated.
    common = args(tiny_bert_dir, data_dir, tmp_path, "--max_pool=160", "--epochs=1", "--save_every=20",
                  "--bootstrap=0")
    subprocess.run([sys.executable, "ade_distill.py", *common], check=True, capture_output=True)
    path = tmp_path / "last" / "train_state.pt"
    state = torch.load(path, weights_only=True)
    assert (state["step"], state["evaluated"]) == (20, 1)
    torch.save({**state, "evaluated": 0}, path)
    resumed = subprocess.run([sys.executable, "ade_distill.py", *common, "--resume=true"],
                             capture_output=True, text=True, check=True)
    assert "resumed from" in resumed.stderr and "epoch 1: dev lenient F1" in resumed.stderr
    assert "| loss" not in resumed.stderr  # nothing trained twice
    changed = subprocess.run([sys.executable, "ade_distill.py", *common, "--resume=true", "--batch_size=4"],
                             capture_output=True, text=True)
    assert changed.returncode != 0 and "resume with the same options" in changed.stderr


def test_lr_schedule_warms_up_then_decays_to_zero_for_every_group():
    assert [ade_distill.lr_scale(step, 100, 0.1) for step in (0, 9, 10, 55, 100)] == [0.1, 1.0, 1.0, 0.5, 0.0]
    assert ade_distill.lr_scale(0, 1, 0.0) == 1.0  # no warmup asked: one step at the peak


def test_given_drugs_run_has_no_test_neg_row(tiny_bert_dir, data_dir, tmp_path):
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path, "--given_drugs=true", "--max_pool=16",
                                 "--epochs=1", "--bootstrap=0", "--lr=0"))  # lr 0: the schedule must not divide
    assert {r["split"] for r in rows} == {"test", "test 2+ drugs"} and all(r["given_drugs"] for r in rows)


def test_unknown_and_mistyped_options_are_errors():
    with pytest.raises(SystemExit, match="unknown option --epoch;.*--epochs"):
        ade_distill.main(["--epoch=3"])
    with pytest.raises(SystemExit, match="--epochs=three: .*expected int"):
        ade_distill.main(["--epochs=three"])
    with pytest.raises(SystemExit, match="'--epochs' is not --key=value"):
        ade_distill.main(["--epochs"])
    assert teacher.override(ade_distill.Config(), ["--drug_negatives"]).drug_negatives is True  # a bare flag


def test_best_score_at_the_teachers_precision(capsys):
    scores, precisions = [0.70, 0.76, 0.75, 0.72], [0.45, 0.52, 0.56, 0.61]
    assert ade_distill.best_at_precision(scores, precisions, 0.40) == 1  # every bias qualifies: the best score
    assert ade_distill.best_at_precision(scores, precisions, 0.55) == 2  # the best score among the precise enough
    assert ade_distill.best_at_precision(scores, precisions, 0.61) == 3
    assert capsys.readouterr().err == ""
    assert ade_distill.best_at_precision(scores, precisions, 0.70) == 1  # none qualifies: the best score, said
    assert "no start cost reaches the teacher's precision" in capsys.readouterr().err


def test_precision_choice(monkeypatch):
    assert ade_distill.choose_precision(torch.device("cpu"), "auto") == (None, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert ade_distill.choose_precision(torch.device("cuda"), "auto") == (torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert ade_distill.choose_precision(torch.device("cuda"), "auto") == (torch.float16, True)
    # a T4 or V100: bf16 only emulated, so fp16 with a GradScaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert ade_distill.choose_precision(torch.device("cuda"), "auto") == (torch.float16, True)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_and_scaler_paths_run_on_cpu(tiny_bert_dir, data_dir, tmp_path, amp):
    """The CUDA AMP code paths, exercised with CPU autocast (fp16 also through the GradScaler)."""
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path, f"--amp={amp}", "--max_pool=32",
                                 "--epochs=1", "--eval_teacher_only=false"))
    history = torch.load(tmp_path / "last" / "train_state.pt", weights_only=True)["history"]
    assert len(history) == 4 and all(h == h and h < 5 for h in history)  # finite losses
    assert rows[-1]["system"] == "student"


def test_ner_and_plain_head_ablation(tiny_bert_dir, data_dir, tmp_path):
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path / "ner", "--task=ner", "--dataset=ncbi_disease",
                                 "--epochs=1"))
    assert [(r["system"], r["split"]) for r in rows] == [("teacher", "test"), ("student", "test")]
    assert set(rows[0]["per_type"]) == {"Disease"}
    rows = ade_distill.main(args(tiny_bert_dir, data_dir, tmp_path / "plain", "--head=plain", "--epochs=1"))
    assert rows[-1]["system"] == "student" and rows[-1]["strict"]["n_gold"] > 0
    student, meta = ade_distill.model.load_student(str(tmp_path / "plain" / "student"))
    assert meta["model"] == "ner" and meta["types"] == ["drug", "ade"]


def test_token_budget_micro_batches_take_the_same_steps(tiny_bert_dir, ade_splits, tmp_path):
    """--max_batch_tokens runs a batch of long sentences as micro-batches of one optimizer step: with dropout
    off, the losses of two steps are those of the whole batches, up to floating-point summation order."""
    model, data = ade_distill.model, ade_distill.data
    tokenizer = model.load_tokenizer(tiny_bert_dir)
    meta = {"task": "ade", "head": "drug", "model": "ade", "types": ["drug", "ade"], "max_len": 128}
    histories = []
    for budget in (4096, 64):
        cfg = ade_distill.Config(out_dir=str(tmp_path / str(budget)), batch_size=8, epochs=1, max_steps=2,
                                 dropout=0.0, max_batch_tokens=budget, lr=1e-3)
        examples = ade_distill.make_examples(ade_splits["train"][:16], tokenizer, cfg, None)
        lengths = [len(x["ids"]) for x in examples]
        assert len(data.split_by_tokens(list(range(8)), lengths, budget)) == (1 if budget == 4096 else 8)
        torch.manual_seed(0)  # the same fresh heads
        student = model.AdeModel(model.load_encoder(tiny_bert_dir, 0.0), 0.0)
        state = ade_distill.train(student, examples, ade_splits["dev"][:4], tokenizer, tiny_bert_dir, cfg,
                                  torch.device("cpu"), meta, None)
        histories.append(state["history"])
    assert len(histories[0]) == 2 and histories[0] == pytest.approx(histories[1], rel=1e-5)


def test_unreachable_hf_model_and_truncated_student_are_one_line_errors(tiny_run, data_dir, tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ade_distill.py")
    offline = subprocess.run([sys.executable, script, "--init_from=hf:org/bert", f"--data_dir={data_dir}",
                              f"--out_dir={tmp_path / 'hf'}"], capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert offline.returncode != 0 and "Traceback" not in offline.stderr
    assert offline.stderr.strip().splitlines()[-1].startswith("error: cannot reach http://127.0.0.1:9/org/bert/")
    assert "teacher:" not in offline.stderr  # the download comes before the teacher labels anything

    shutil.copytree(tiny_run[0], tmp_path / "cut", ignore=shutil.ignore_patterns("last*"))
    heads = tmp_path / "cut" / "student" / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:100])
    cut = subprocess.run([sys.executable, script, f"--out_dir={tmp_path / 'cut'}", "--predict=Aspirin gave rash."],
                         capture_output=True, text=True)
    assert cut.returncode != 0 and "Traceback" not in cut.stderr
    assert cut.stderr.strip().splitlines()[-1].startswith(f"error: {heads} is not a readable safetensors file")
